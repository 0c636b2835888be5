/**
 * The identity run on CPU, every contender in one run on the same machine and minute:
 * plain mlx-lm on the stock mlx-cpu wheel (reference BLAS) and with the bridge's BLAS, PyTorch + PEFT in
 * float32 and bfloat16 (from .venv-bench, made by bench/fast-tune/setup-bench-env.sh), tunelab's
 * fast path in a plain script, and `%tune` through the kernel. Same model (the embedded
 * SmolLM2-135M-Instruct), data (data/identity.jsonl, 5 pairs), LoRA recipe and step count.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { KernelMessage } from "@jupyterlab/services";
import { bridgeEnv } from "../../kernel/bridge/local.js";
import { BRIDGE_PYTHON, CACHE_DIR, PACKAGE_ROOT } from "../../kernel/paths.js";
import { LocalKernel } from "../../kernel/runner/local-kernel.js";
import { bundledKernelSpec } from "../../kernel/runner/kernelspec.js";
import { textOf } from "../kernel-output.js";
import { blasPhrase } from "../../kernel/bridge/blas-text.js";
import { bridgeBlas, candidatesTable } from "../blas-report.js";

const HERE = join(PACKAGE_ROOT, "bench", "fast-tune");
const MODEL = join(CACHE_DIR, "models", "SmolLM2-135M-Instruct");
const DATA = join(PACKAGE_ROOT, "data", "identity.jsonl");
const BENCH_PYTHON = join(PACKAGE_ROOT, ".venv-bench", "bin", "python");
const ITERS = Number(process.env.TUNELAB_BENCH_FAST_ITERS ?? 200);
// The stock wheel runs ~20x slower per step: a few steps give its rate; its arithmetic is the
// same-BLAS row's, so it would reach the same identity.
const STOCK_ITERS = Number(process.env.TUNELAB_BENCH_FAST_STOCK_ITERS ?? 5);
const LR = Number(process.env.TUNELAB_BENCH_FAST_LR ?? 5e-5); // %tune's default and the reproduction's
// On a machine shared with other jobs, BLAS and OpenMP threads that spin-wait make every row
// many times slower; TUNELAB_BENCH_THREADS=N pins every contender (MLX's OpenBLAS, the bridge
// behind the kernel, PyTorch) to N threads. Unset: each library's default.
const THREADS = process.env.TUNELAB_BENCH_THREADS;
if (THREADS) {
  process.env.OPENBLAS_NUM_THREADS = THREADS;
  process.env.OMP_NUM_THREADS = THREADS;
  process.env.TORCH_THREADS = THREADS;
}
// On an AVX-512 machine, TUNELAB_BENCH_FORCE_AVX2=1 runs every contender as a CPU without
// AVX-512 would: Debian's DYNAMIC_ARCH OpenBLAS told to take its Haswell kernels, and the host
// kernels capped at their AVX2 path (the table's heading says so).
const FORCE_AVX2 = process.env.TUNELAB_BENCH_FORCE_AVX2 === "1";
if (FORCE_AVX2) {
  process.env.TUNELAB_BLAS = "system-openblas";
  process.env.OPENBLAS_CORETYPE = "Haswell";
  process.env.TUNELAB_HOST_KERNELS_PATH = "avx2";
}
const EXPECT = "Quill";
const EVAL = "Who are you?";
const REFERENCE_SECONDS = 10.5; // M4 Max GPU, 200 steps (the reproduction this run is measured against)

interface Row {
  label: string;
  detail: string;
  steps: number;
  secondsPerStep: number;
  trainSeconds: number;
  identity: boolean | null;
  answer: string;
  note: string;
  skipped?: string;
}

interface ScriptResult {
  steps: number;
  train_seconds: number;
  seconds_per_step: number;
  first_loss: number | null;
  last_loss: number | null;
  answers: { prompt: string; answer: string }[];
  identity: boolean | null;
  blas?: string;
  threads?: number;
  prepare_seconds?: number;
}

function runProcess(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

async function script(python: string, file: string, args: string[], env: NodeJS.ProcessEnv): Promise<ScriptResult> {
  const run = await runProcess(python, [join(HERE, file), "--model", MODEL, "--data", DATA, "--lr", String(LR), ...args], env);
  const line = run.stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (run.code !== 0 || !line) throw new Error(`${file} ${args.join(" ")} failed (exit ${run.code}): ${run.stderr.slice(-1500)}`);
  return JSON.parse(line.slice("RESULT ".length)) as ScriptResult;
}

/** The bridge's environment with the BLAS bundled in the mlx[cpu] wheel: what a plain `pip install mlx[cpu]` gives. */
function stockEnv(): NodeJS.ProcessEnv {
  return bridgeEnv({ TUNELAB_BLAS: "reference" });
}

/**
 * The bridge's BLAS choice for this CPU (blas.activate in the scripts). The peers keep OpenBLAS's
 * own worker timeout (2^28 cycles); only tunelab's rows take the bridge's short one.
 */
function sameBlasEnv(): NodeJS.ProcessEnv {
  return bridgeEnv({ OPENBLAS_THREAD_TIMEOUT: process.env.OPENBLAS_THREAD_TIMEOUT ?? "28" });
}

function fromScript(label: string, detail: string, r: ScriptResult, note = ""): Row {
  const answer = r.answers[0]?.answer ?? "";
  return { label, detail, steps: r.steps, secondsPerStep: r.seconds_per_step, trainSeconds: r.train_seconds, identity: r.identity, answer, note };
}

function skipped(label: string, detail: string, reason: string): Row {
  return { label, detail, steps: 0, secondsPerStep: NaN, trainSeconds: NaN, identity: null, answer: "", note: "", skipped: reason };
}


interface KernelOutcome {
  steps: number;
  train_seconds: number;
  evals: { prompt: string; after: string | null }[];
  optimisations: unknown;
  blas: { name?: string } | null;
}

async function tuneThroughKernel(): Promise<{ row: Row; optimisations: unknown }> {
  const cwd = mkdtempSync(join(tmpdir(), "tunelab-bench-fast-"));
  const kernel = await LocalKernel.start(bundledKernelSpec(), { cwd, startupTimeoutMs: 180_000 });
  try {
    const cell = `%tune --data ${DATA} --iters ${ITERS} --lr ${LR} --name bench-fast-tune --eval "${EVAL}"`;
    const reply = await kernel.execute(cell, () => undefined);
    if (reply.status !== "ok") throw new Error(`%tune failed in the kernel: ${JSON.stringify(reply).slice(0, 600)}`);
    let printed = "";
    const pick = "const r = tunelab.results.tune; console.log(JSON.stringify({ steps: r.steps, train_seconds: r.train_seconds, evals: r.evals, optimisations: r.optimisations, blas: r.blas }))";
    await kernel.execute(pick, (message) => {
      if (message.header.msg_type === "stream") printed += textOf(message);
    });
    const r = JSON.parse(printed.trim()) as KernelOutcome;
    const answer = r.evals[0]?.after ?? "";
    return {
      row: {
        label: "`%tune` through the kernel",
        detail: `float32, ${r.blas?.name ?? "bridge BLAS"}`,
        steps: r.steps,
        secondsPerStep: r.train_seconds / r.steps,
        trainSeconds: r.train_seconds,
        identity: answer.includes(EXPECT),
        answer,
        note: "",
      },
      optimisations: r.optimisations,
    };
  } finally {
    await kernel.shutdown();
  }
}

const f = (n: number, digits = 3) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
const quote = (s: string) => (s ? `“${s.replace(/\s+/g, " ").replace(/\|/g, "\\|").trim().slice(0, 70)}”` : "");

async function attempt(label: string, detail: string, run: () => Promise<Row>): Promise<Row> {
  try {
    return await run();
  } catch (error) {
    return skipped(label, detail, (error as Error).message.split("\n")[0]!.slice(0, 300));
  }
}

export async function runFastTuneBench(): Promise<{ markdown: string }> {
  if (!existsSync(BRIDGE_PYTHON)) throw new Error("the MLX bridge is not installed; run `npm run setup`");
  if (!existsSync(join(MODEL, "config.json"))) throw new Error(`the embedded model is not imported at ${MODEL}; run \`npm run setup\``);
  const loadBefore = loadavg()[0]!;
  // Every candidate measured again now, on this CPU: the rates of this run, and the bridge's choice.
  const blas = await bridgeBlas({}, true);
  const chosen = blasPhrase({ ...blas, gflops: null });
  const openblas = sameBlasEnv();
  const evalArgs = ["--eval", EVAL, "--expect", EXPECT];
  const rows: Row[] = [];

  rows.push(await attempt("plain mlx-lm (`train`), stock mlx-cpu wheel", "float32, reference BLAS", async () =>
    fromScript("plain mlx-lm (`train`), stock mlx-cpu wheel", "float32, reference BLAS",
      await script(BRIDGE_PYTHON, "mlx_tune.py", ["--mode", "mlx-lm", "--iters", String(STOCK_ITERS)], stockEnv()),
      `${STOCK_ITERS} steps timed, total extrapolated; same arithmetic as the same-BLAS row`)));
  rows.push(await attempt("plain mlx-lm (`train`), same BLAS", `float32, ${chosen}`, async () =>
    fromScript("plain mlx-lm (`train`), same BLAS", `float32, ${chosen}`,
      await script(BRIDGE_PYTHON, "mlx_tune.py", ["--mode", "mlx-lm", "--iters", String(ITERS), ...evalArgs], openblas))));
  for (const dtype of ["float32", "bfloat16"]) {
    const label = `PyTorch + PEFT, ${dtype}`;
    if (!existsSync(BENCH_PYTHON)) {
      rows.push(skipped(label, dtype, "no .venv-bench (PyPI's Linux torch brings ~5.6 GB of CUDA libraries); create it with bench/fast-tune/setup-bench-env.sh"));
      continue;
    }
    rows.push(await attempt(label, dtype, async () => {
      const r = await script(BENCH_PYTHON, "torch_tune.py", ["--dtype", dtype, "--iters", String(ITERS), ...evalArgs], { ...process.env });
      return fromScript(label, `${dtype}, ${r.threads ?? "?"} threads`, r);
    }));
  }
  rows.push(await attempt("tunelab fast path, same script", `float32, ${chosen}`, async () => {
    // The bridge's own BLAS settings (blas/__init__.py): OpenBLAS workers sleep right after each call.
    const r = await script(BRIDGE_PYTHON, "mlx_tune.py", ["--mode", "fast", "--iters", String(ITERS), ...evalArgs], bridgeEnv());
    return fromScript("tunelab fast path, same script", `float32, ${chosen}`, r, `+ ${f(r.prepare_seconds ?? NaN, 1)} s once for the frozen-prefix cache`);
  }));
  let optimisations: unknown = null;
  rows.push(await attempt("`%tune` through the kernel", "float32", async () => {
    const out = await tuneThroughKernel();
    optimisations = out.optimisations;
    return out.row;
  }));
  const loadAfter = loadavg()[0]!;

  const tune = rows[rows.length - 1]!;
  const fastRow = rows[rows.length - 2]!;
  const ratio = (of: Row, other: Row) => (Number.isFinite(other.secondsPerStep) && Number.isFinite(of.secondsPerStep) ? other.secondsPerStep / of.secondsPerStep : NaN);
  const table = [
    `| run | arithmetic | s/step | training time, ${ITERS} steps (s) | identity after training (“${EVAL}”) | fast path is faster by | \`%tune\` is faster by |`,
    "|---|---|---:|---:|---|---:|---:|",
    ...rows.map((r) => {
      if (r.skipped) return `| ${r.label} | ${r.detail} | skipped | | ${r.skipped} | | |`;
      const total = r.steps === ITERS ? f(r.trainSeconds, 1) : `${f(r.secondsPerStep * ITERS, 0)} (extrapolated)`;
      const identity = r.identity === null ? r.note : `${r.identity ? "yes" : "no"} ${quote(r.answer)}${r.note ? ` (${r.note})` : ""}`;
      return `| ${r.label} | ${r.detail} | ${f(r.secondsPerStep)} | ${total} | ${identity} | ${r === fastRow ? "" : `${f(ratio(fastRow, r), 1)}x`} | ${r === tune ? "" : `${f(ratio(tune, r), 1)}x`} |`;
    }),
  ];
  const byLabel = (prefix: string) => rows.find((r) => r.label.startsWith(prefix) && !r.skipped);
  const goalsFor = (who: string, of: Row) => {
    if (!Number.isFinite(of.secondsPerStep)) return [`${who}: not measured (${of.skipped ?? "no result"})`];
    const goal = (name: string, other: Row | undefined, aim: number) =>
      other ? `${name}: ${f(ratio(of, other), 2)}x (aim ${aim}x) ${ratio(of, other) >= aim ? "met" : "NOT met"}` : `${name}: not measured`;
    return [
      `${who}: ${f(of.secondsPerStep * ITERS, 1)} s for ${ITERS} steps (aim ≤ ${REFERENCE_SECONDS} s, the M4 Max GPU reproduction) ${of.secondsPerStep * ITERS <= REFERENCE_SECONDS ? "met" : "NOT met"}; identity after training: ${of.identity ? "yes" : "no"}; ` +
        [
          goal("vs PyTorch + PEFT bfloat16", byLabel("PyTorch + PEFT, bfloat16"), 1.4),
          goal("vs plain mlx-lm with the same BLAS", byLabel("plain mlx-lm (`train`), same BLAS"), 4),
          goal("vs plain mlx-lm on the stock wheel", byLabel("plain mlx-lm (`train`), stock"), 60),
        ].join("; "),
    ];
  };
  const goals = [...goalsFor("`%tune` through the kernel", tune), ...goalsFor("fast path (same script as the peers)", fastRow)];
  const markdown = [
    `CPU as the bridge sees it: ${blas.cpu?.summary ?? "unknown"}${FORCE_AVX2 ? "; **forced to the AVX2 path** (TUNELAB_BENCH_FORCE_AVX2=1: OpenBLAS's Haswell kernels, host kernels capped at AVX2)" : ""}. BLAS chosen by the bridge: ${chosen}. Every candidate, checked and measured at the start of this run:`,
    "",
    ...candidatesTable(blas),
    "",
    `Embedded SmolLM2-135M-Instruct (float32 for MLX), data/identity.jsonl (5 pairs), ${ITERS} steps, batch 1, LR ${LR}, Adam, LoRA rank 8 / scale 20 (PEFT alpha 160) on q_proj + v_proj of the last 4 blocks, answer-only loss. Training time excludes model loading and, for the fast path, the one-off frozen-prefix pass. Threads: ${THREADS ? `${THREADS} per contender (TUNELAB_BENCH_THREADS)` : "library defaults"}. Load average ${loadBefore.toFixed(1)} at the start and ${loadAfter.toFixed(1)} at the end on this machine: compare rows, not runs.`,
    "",
    ...table,
    "",
    ...goals.map((g) => `- ${g}`),
    "",
    `Optimisations reported by \`%tune\`: \`${JSON.stringify(optimisations)}\``,
  ].join("\n");
  return { markdown };
}
