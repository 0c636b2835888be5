import * as aq from "arquero";
import { figure, type Figure } from "../display/figure.js";
import { table, type ColumnTable, type Table } from "../display/table.js";
import type { PlotlyTrace } from "../display/plotly-types.js";
import type { BenchRow } from "./bench-job.js";
import type { BenchOutcome } from "./bench.js";
import { M4_MAX_QUOTED_PEAK_TFLOPS, M4_MAX_REFERENCE, M4_MAX_REFERENCE_SOURCE } from "./configs.js";
import type { TrainPoint, TrainSummary } from "./train.js";
import { TINY_TRAIN_DEFAULTS, TINY_TRAIN_REFERENCE } from "./tiny-train.js";

/** arquero types its rows as `object`; the table helper reads them as records. */
function columns(rows: Record<string, unknown>[]): ColumnTable {
  const t = aq.from(rows);
  return {
    columnNames: () => t.columnNames(),
    numRows: () => t.numRows(),
    objects: (options) => t.objects(options) as Record<string, unknown>[],
  };
}

const COLORS: Record<string, string> = { ane: "#d62728", cpu: "#1f77b4", mlx: "#2ca02c", "M4 Max (reference)": "#7f7f7f" };

function fixed(digits: number) {
  return (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–");
}

function precise(v: unknown): string {
  if (typeof v !== "number" || !Number.isFinite(v)) return "–";
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

/** The results table: one row per backend and config, with the share of that backend's measured peak. */
export function benchTable(outcome: BenchOutcome, caption = "Conv-stack throughput"): Table {
  const showReference = outcome.rows.some((r) => r.backend === "ane");
  const anyFailed = outcome.rows.some((r) => r.status === "failed");
  const rows = outcome.rows.map((r) => {
    const peak = outcome.peaks[r.backend as keyof BenchOutcome["peaks"]];
    const reference = r.channels === 512 && r.spatial === 64 ? M4_MAX_REFERENCE[r.depth] : undefined;
    return {
      backend: r.backend,
      config: `${r.depth}x conv ${r.channels}ch sp${r.spatial}`,
      "weight MB": r.weightMB,
      "GFLOP/eval": r.gflop,
      "ms/eval": r.msMedian,
      "spread ms (p10–p90)": `${precise(r.msP10)}–${precise(r.msP90)}`,
      TFLOPS: r.status === "failed" ? "FAIL" : r.tflops,
      "% of peak": peak ? (100 * r.tflops) / peak.tflops : NaN,
      "rel. error": r.relError,
      ...(showReference ? { "M4 Max ms (write-up)": reference?.ms ?? NaN, "M4 Max TFLOPS (write-up)": reference?.tflops ?? NaN } : {}),
      ...(anyFailed ? { "why it failed": r.error ?? "" } : {}),
    };
  });
  return table(columns(rows), {
    caption,
    format: {
      "weight MB": fixed(1),
      "GFLOP/eval": fixed(3),
      "ms/eval": precise,
      TFLOPS: (v) => (typeof v === "string" ? v : typeof v === "number" && Number.isFinite(v) ? v.toPrecision(3) : "–"),
      "% of peak": fixed(1),
      "rel. error": (v) => (typeof v === "number" && Number.isFinite(v) ? v.toExponential(1) : "–"),
      "M4 Max ms (write-up)": fixed(3),
      "M4 Max TFLOPS (write-up)": fixed(2),
    },
  });
}

/** What each backend's "% of peak" is measured against. */
export function peaksTable(outcome: BenchOutcome): Table {
  const rows: Record<string, unknown>[] = Object.entries(outcome.peaks).map(([backend, peak]) => ({ backend, "peak TFLOPS": peak!.tflops, "measured as": peak!.how }));
  for (const [backend, reason] of Object.entries(outcome.unavailable)) rows.push({ backend, "peak TFLOPS": NaN, "measured as": reason });
  return table(rows, { caption: "Peaks (same run)", format: { "peak TFLOPS": (v) => (typeof v === "number" && Number.isFinite(v) ? v.toPrecision(3) : "–") } });
}

/**
 * The write-up's M4 Max figures for the 512-channel stacks beside what each backend measured here on
 * the same shapes, and the deepest stack's share of its peak; null when no such shape ran.
 */
export function peakReferenceTable(outcome: BenchOutcome, machine: string): Table | null {
  const measured = outcome.rows.filter((r) => r.status === "ok" && r.channels === 512 && r.spatial === 64 && M4_MAX_REFERENCE[r.depth]);
  if (measured.length === 0) return null;
  const figures = (ms: number, tflops: number) => `${precise(ms)} ms, ${tflops.toPrecision(3)} TFLOPS`;
  const rows: Record<string, unknown>[] = measured.map((r) => {
    const claimed = M4_MAX_REFERENCE[r.depth]!;
    return { figure: `${r.depth}x conv 512ch sp64`, "claimed (M4 Max ANE)": figures(claimed.ms, claimed.tflops), measured: `${figures(r.msMedian, r.tflops)} (${r.backend})` };
  });
  const deepest = Math.max(...Object.keys(M4_MAX_REFERENCE).map(Number));
  const claimedShare = `${M4_MAX_REFERENCE[deepest]!.tflops} of ~${M4_MAX_QUOTED_PEAK_TFLOPS} TFLOPS (quoted fp16 peak): ${((100 * M4_MAX_REFERENCE[deepest]!.tflops) / M4_MAX_QUOTED_PEAK_TFLOPS).toFixed(0)}%`;
  for (const backend of [...new Set(measured.map((r) => r.backend))]) {
    const best = measured.filter((r) => r.backend === backend).reduce((a, b) => (b.depth > a.depth ? b : a));
    const peak = outcome.peaks[backend as keyof BenchOutcome["peaks"]];
    rows.push({
      figure: "deepest stack, share of peak",
      "claimed (M4 Max ANE)": claimedShare,
      measured: peak ? `${best.depth}x: ${best.tflops.toPrecision(3)} of ${peak.tflops.toPrecision(3)} TFLOPS (${peak.how}): ${((100 * best.tflops) / peak.tflops).toFixed(0)}% (${backend})` : `${best.depth}x: no peak measured (${backend})`,
    });
  }
  return table(columns(rows), { caption: `Peak benchmark: claimed (${M4_MAX_REFERENCE_SOURCE}, on an M4 Max's Neural Engine) against measured on ${machine}${outcome.blas ? `, BLAS ${outcome.blas}` : ""}` });
}

/** Throughput against depth, one line per backend and channel count (failed configs left out), with the write-up's M4 Max figures when the ANE ran. */
export function benchFigure(rows: readonly BenchRow[], withReference: boolean): Figure {
  const groups = new Map<string, BenchRow[]>();
  for (const r of rows.filter((row) => row.status !== "failed")) {
    const key = `${r.backend} ${r.channels}ch`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const data: PlotlyTrace[] = [...groups.entries()].map(([name, rs]) => {
    const sorted = [...rs].sort((a, b) => a.depth - b.depth);
    return { type: "scatter", mode: "lines+markers", name, x: sorted.map((r) => r.depth), y: sorted.map((r) => r.tflops), line: { color: COLORS[rs[0]!.backend] } };
  });
  if (withReference) {
    const depths = Object.keys(M4_MAX_REFERENCE).map(Number);
    data.push({ type: "scatter", mode: "lines+markers", name: "M4 Max 512ch (reproduction write-up)", x: depths, y: depths.map((d) => M4_MAX_REFERENCE[d]!.tflops), line: { color: COLORS["M4 Max (reference)"], dash: "dash" } });
  }
  return figure({
    data,
    layout: {
      title: "Conv-stack throughput against depth",
      height: 340,
      xaxis: { title: "depth (chained 1x1 convs)" },
      yaxis: { title: "TFLOPS", type: withReference || groups.size > 1 ? "log" : "linear" },
      legend: { orientation: "h", y: -0.25 },
    },
  });
}

/** The live loss curve of %ane_train, with a dotted line where a fresh worker took over. */
export function trainFigure(losses: readonly TrainPoint[], restartSteps: readonly number[], steps: number, live = false): Figure {
  const finite = losses.filter((p) => Number.isFinite(p.loss) && p.loss > 0);
  const lossAt = (step: number) => finite.find((p) => p.step >= step)?.loss ?? finite.at(-1)?.loss ?? 1;
  const data: PlotlyTrace[] = [
    { type: "scatter", mode: "lines", name: "loss", x: finite.map((p) => p.step), y: finite.map((p) => p.loss), line: { color: "#1f77b4" } },
  ];
  if (restartSteps.length > 0) {
    data.push({ type: "scatter", mode: "markers", name: "worker restarted", x: [...restartSteps], y: restartSteps.map(lossAt), marker: { color: "#d62728", size: 9, symbol: "x" } });
  }
  const spec = {
    data,
    layout: {
      title: "%ane_train loss",
      height: 320,
      xaxis: { title: "step", range: [0, steps] as [number, number] },
      yaxis: { title: "MSE loss", type: "log" },
      shapes: restartSteps.map((s) => ({ type: "line", x0: s, x1: s, yref: "paper", y0: 0, y1: 1, line: { color: "#d62728", dash: "dot", width: 1 } })),
      legend: { orientation: "h", y: -0.25 },
    },
  };
  const f = figure(spec);
  return live ? f.light() : f;
}

export function trainTable(summary: TrainSummary, backend: string): Table {
  return table(
    columns([
      {
        backend,
        status: summary.status,
        steps: summary.steps,
        "first loss": summary.firstLoss,
        "final loss": summary.finalLoss,
        restarts: summary.restarts,
        compiles: summary.compiles,
        "compile s": summary.compileMs / 1000,
        "train s": summary.trainMs / 1000,
        "wall s": summary.wallMs / 1000,
        "GFLOP/s": summary.gflops,
        "compile s hidden": summary.hiddenCompileMs / 1000,
        "stale batches": summary.staleBatches,
        "failed compiles": summary.compileFailures.length,
      },
    ]),
    {
      caption: "%ane_train summary",
      format: {
        "first loss": fixed(4),
        "final loss": fixed(4),
        "compile s": fixed(2),
        "train s": fixed(2),
        "wall s": fixed(2),
        "GFLOP/s": fixed(2),
        "compile s hidden": fixed(2),
      },
    },
  );
}

export interface TrainSettings {
  steps: number;
  lr: number;
  accum: number;
  compileBudget: number;
}

/**
 * The reproduction write-up's figures for tiny_train beside this run's. They compare fully only with
 * the reference settings (2,000 steps, lr 1, accumulation 10, budget 100); otherwise the caption says
 * which differ. The write-up ran on the ANE (fp16); the cpu backend computes in fp32.
 */
export function trainReferenceTable(summary: TrainSummary, settings: TrainSettings, backend: string, machine: string): Table {
  const ref = TINY_TRAIN_REFERENCE;
  const lossAt = (step: number) => summary.losses.find((p) => p.step === step)?.loss;
  const differing = (Object.keys(TINY_TRAIN_DEFAULTS) as Array<keyof TrainSettings>).filter((k) => settings[k] !== TINY_TRAIN_DEFAULTS[k]);
  const loss = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? "–" : v < 0.01 ? v.toExponential(2) : v.toFixed(4));
  const rows = [
    { figure: "loss at step 1", claimed: loss(ref.firstLoss), measured: loss(summary.losses[0]?.step === 1 ? summary.losses[0].loss : undefined) },
    { figure: `loss at step ${ref.steps}`, claimed: loss(ref.finalLoss), measured: loss(lossAt(ref.steps)) },
    { figure: "restarts at steps", claimed: ref.restartSteps.map((s) => `~${s}`).join(", "), measured: summary.restartSteps.join(", ") || "none" },
    { figure: "GFLOP/s of the four kernels", claimed: `~${ref.aneGflops.join("–")} (ANE)`, measured: `${summary.gflops.toFixed(2)} (${backend})` },
  ];
  const note = differing.length ? `; this run's ${differing.map((k) => `${k} ${settings[k]}`).join(", ")} differ from the reference's, so only its first loss compares` : "";
  return table(columns(rows), { caption: `tiny_train: claimed (${ref.source}) against measured${note}; measured with the ${backend} backend on ${machine}` });
}
