import { Bundle, html } from "../display/bundle.js";
import { figure, PLOTLY_MIME, type Figure } from "../display/figure.js";
import { DISPLAY } from "../display/mime.js";
import { escapeHtml, formatDuration, formatNumber } from "../display/format.js";
import { LiveDisplay } from "../display/live.js";
import { blasPhrase, blasRejections } from "../bridge/blas-text.js";
import type { FigureSpec } from "../display/plotly-types.js";
import { table } from "../display/table.js";
import type { CellIO } from "../session/cell-io.js";
import type { BridgeStatus, ProgressEvent, TuneResult, ValEvent } from "../bridge/types.js";
import type { TuneFlagParams } from "./options.generated.js";

/** What `%tune` returns to TypeScript (`tunelab.results.tune`): the bridge's result plus the curves as rows. */
export interface TuneOutcome extends TuneResult {
  history: ProgressEvent[];
  val_history: ValEvent[];
}

/** Repaints of the live output per second: enough to watch the loss fall, cheap on the wire. */
const REPAINTS_PER_SECOND = 2;

const PHASES: Record<string, string> = {
  loading: "loading the model…",
  preparing: "preparing the data…",
  "eval-before": "answering the --eval prompts before training…",
  training: "training…",
  "eval-after": "answering the --eval prompts after training…",
  saving: "saving the adapter…",
};

function shortKeys(keys: string[]): string {
  return keys.map((k) => k.split(".").pop()).join(", ");
}

/** The Plotly figure of a run: train loss per step, validation loss where measured. */
export function lossFigure(history: ProgressEvent[], valHistory: ValEvent[], iters: number): FigureSpec {
  const data: FigureSpec["data"] = [
    { type: "scatter", mode: "lines", name: "train loss", x: history.map((p) => p.step), y: history.map((p) => p.loss), line: { color: "#1f77b4" } },
  ];
  if (valHistory.length > 0) {
    data.push({ type: "scatter", mode: "lines+markers", name: "validation loss", x: valHistory.map((v) => v.step), y: valHistory.map((v) => v.val_loss), line: { color: "#ff7f0e" } });
  }
  return {
    data,
    layout: {
      height: 320,
      margin: { l: 50, r: 20, t: 20, b: 40 },
      xaxis: { title: { text: "step" }, range: [0, iters] as const },
      yaxis: { title: { text: "loss" }, rangemode: "tozero" },
      legend: { orientation: "h", y: 1.08 },
    },
    config: { displaylogo: false, responsive: true },
  };
}

export function progressLine(p: ProgressEvent): string {
  const remaining = p.it_per_s ? (p.iters - p.step) / p.it_per_s : NaN;
  return [
    `step ${p.step}/${p.iters}`,
    `loss ${formatNumber(p.loss)}`,
    p.it_per_s === null ? "" : `${formatNumber(p.it_per_s)} it/s`,
    p.tokens_per_s === null ? "" : `${formatNumber(Math.round(p.tokens_per_s))} tokens/s`,
    Number.isFinite(remaining) && remaining > 0 ? `ETA ${formatDuration(remaining)}` : "",
    `peak ${formatNumber(p.peak_memory_gb)} GB`,
  ]
    .filter(Boolean)
    .join(" · ");
}

/**
 * The one live output of a %tune run: a header (model, BLAS), the loss curve and a progress
 * line, repainted in place at most twice a second, with a final repaint that is never dropped.
 */
export class TuneView {
  private readonly live: LiveDisplay;
  private headerText: string;
  private warning = "";
  private status = "starting the MLX bridge…";
  private readonly history: ProgressEvent[] = [];
  private readonly valHistory: ValEvent[] = [];

  constructor(private readonly io: CellIO, private readonly params: TuneFlagParams) {
    this.live = new LiveDisplay(io, { maxPerSecond: REPAINTS_PER_SECOND });
    this.headerText = this.describeRun("model " + (params.model ?? "embedded SmolLM2-135M-Instruct"));
    this.repaint();
  }

  private describeRun(model: string): string {
    const p = this.params;
    const group = p.hosts ? ` · data-parallel over the hosts of ${p.hosts.source} (${p.backend})` : p.processes > 1 ? ` · data-parallel over ${p.processes} processes (${p.backend})` : "";
    return `${model} · LoRA rank ${p.rank}, scale ${p.scale} on the last ${p.layers} blocks (${shortKeys(p.keys)}) · lr ${formatNumber(p.lr)} · ${p.iters} steps${group}`;
  }

  header(status: BridgeStatus): void {
    const model = status.model?.name ?? this.params.model ?? "embedded SmolLM2-135M-Instruct";
    const cpu = status.blas.cpu ? ` · ${status.blas.cpu.summary}` : "";
    const rejected = blasRejections(status.blas);
    this.headerText =
      `${this.describeRun(model)}\nMLX ${status.mlx} on ${status.device} · BLAS ${blasPhrase(status.blas, formatNumber)}${cpu}` +
      (rejected.length ? `\nnot used on this CPU: ${rejected.join("; ")}` : "");
    this.warning = status.blas.warning ? `warning: ${status.blas.warning}` : "";
    this.status = "loading the model…";
    this.repaint();
  }

  phase(name: string, detail?: string): void {
    if (name === "training" && this.history.length > 0) return;
    this.status = (PHASES[name] ?? `${name}…`) + (detail ? ` (${detail})` : "");
    this.repaint();
  }

  progress(p: ProgressEvent): void {
    this.history.push(p);
    this.status = progressLine(p);
    this.repaint();
  }

  val(v: ValEvent): void {
    this.valHistory.push(v);
    this.repaint();
  }

  evalAnswer(prompt: string, when: "before" | "after", _text: string): void {
    this.status = when === "before" ? `answered '${prompt}' before training` : `answered '${prompt}' after training`;
    this.repaint();
  }

  finish(outcome: TuneOutcome): void {
    const last = this.history[this.history.length - 1];
    const what = outcome.status === "interrupted" ? `interrupted at step ${outcome.steps}; the partial adapter is kept` : `completed ${outcome.steps} steps`;
    this.status = `${what} in ${formatDuration(outcome.train_seconds || outcome.seconds)}${last ? ` · ${progressLine(last)}` : ""}`;
    this.live.close(() => this.render(true));
    this.io.display(summaryTable(outcome));
    if (outcome.evals.length > 0) this.io.display(evalTable(outcome));
  }

  fail(message: string): void {
    const last = this.history[this.history.length - 1];
    this.status = last ? `failed at step ${last.step}: ${message}` : `failed: ${message}`;
    this.live.close(() => this.render(true));
  }

  private repaint(): void {
    this.live.update(() => this.render(false));
  }

  /**
   * Header, curve and progress line in one output. Live repaints use the light figure (static
   * drawing, or the page's Plotly); the last one embeds Plotly so the saved notebook stands alone.
   */
  private render(final: boolean) {
    const lines = [this.headerText, this.warning, this.status].filter(Boolean);
    let curve = "";
    let fig: Figure | undefined;
    if (this.history.length > 0) {
      fig = figure(lossFigure(this.history, this.valHistory, this.params.iters));
      curve = (final ? fig : fig.light()).toHTML();
    }
    const htmlText =
      `<div class="tunelab-tune">` +
      `<div style="font-size:90%;opacity:0.8;white-space:pre-wrap">${escapeHtml(this.headerText)}</div>` +
      (this.warning ? `<div style="color:#b45309;font-weight:600">${escapeHtml(this.warning)}</div>` : "") +
      curve +
      `<div style="font-family:monospace">${escapeHtml(this.status)}</div></div>`;
    const shown = html(htmlText, lines.join("\n"));
    if (!final || !fig) return shown;
    // The saved output also carries the curve as Plotly JSON and as a static SVG, so that viewers
    // that show no HTML (GitHub, nbviewer, a Plotly renderer extension) still show the loss curve.
    const curveBundle = fig[DISPLAY]().data;
    return new Bundle({ ...shown.data, [PLOTLY_MIME]: curveBundle[PLOTLY_MIME], "image/svg+xml": curveBundle["image/svg+xml"] });
  }
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toPrecision(2)}%` : "";
}

export function summaryTable(o: TuneOutcome) {
  const rows: Array<[string, unknown]> = [
    ["status", o.status],
    ["steps", `${o.steps} / ${o.iters}`],
    ...(o.processes ? [["processes", `${o.processes} (${o.backend}, gradients all-reduced, weighted by tokens)`] as [string, unknown]] : []),
    ["training time", formatDuration(o.train_seconds)],
    ["total time", formatDuration(o.seconds)],
    ["it/s", o.it_per_s],
    ["tokens/s", Math.round(o.tokens_per_s)],
    ["trained tokens", o.trained_tokens],
    ["trainable params", `${formatNumber(o.trainable_params)} of ${formatNumber(o.total_params)} (${percent(o.trainable_params, o.total_params)})`],
    ["first loss", o.first_loss],
    ["last loss", o.last_loss],
    ...(o.val_loss !== null && o.val_loss !== undefined ? [["validation loss", o.val_loss] as [string, unknown]] : []),
    ["peak memory", `${formatNumber(o.peak_memory_gb)} GB`],
    ["BLAS", o.blas ? blasPhrase(o.blas, formatNumber) : ""],
    ...(o.blas?.cpu ? [["CPU", o.blas.cpu.summary] as [string, unknown]] : []),
    ["adapter", o.adapter_path ?? "(none saved)"],
    ...Object.entries(o.optimisations ?? {}).map(([name, opt]): [string, unknown] => [
      name.replace(/_/g, " "),
      opt ? (opt.used ? `used${opt.detail ? ` (${opt.detail})` : ""}` : `off: ${opt.reason ?? "not applicable"}`) : "",
    ]),
  ];
  return table(
    rows.map(([metric, value]) => ({ metric, value: typeof value === "number" ? formatNumber(value) : value })),
    { caption: `Run ${o.name} (${o.model?.name ?? "model"})` },
  );
}

export function evalTable(o: TuneOutcome) {
  return table(
    o.evals.map((e) => ({ prompt: e.prompt, before: e.before ?? "", after: e.after ?? "" })),
    { caption: "Answers before and after training" },
  );
}
