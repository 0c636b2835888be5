import type { BackendName, GraphHandle, NativeAddon } from "./addon.js";
import { gflopPerEval, weightBytes, type StackConfig } from "./configs.js";
import { roundToFloat16 } from "./fp16.js";
import { Random } from "./random.js";
import { referenceColumns, relativeError } from "./reference.js";
import { describeFor, type ConvStack } from "./stack.js";
import { summarize } from "./stats.js";

export interface BenchJobParams {
  backend: BackendName;
  configs: StackConfig[];
  warmup: number;
  iters: number;
  seed: number;
  /** Weight files per ANE program (1 to 16), the layers split over them in order. */
  weightFiles?: number;
  /** Index of configs[0] in the whole request (a fresh worker continuing after a crash): seeds follow it. */
  firstIndex?: number;
}

export interface BenchRow {
  backend: string;
  /** "failed": this config did not compile, run or match the reference; `error` says why and the timings are NaN. */
  status: "ok" | "failed";
  error?: string;
  channels: number;
  spatial: number;
  depth: number;
  weightMB: number;
  gflop: number;
  msMedian: number;
  msP10: number;
  msP90: number;
  tflops: number;
  relError: number;
  compileMs: number;
}

export interface BackendPeak {
  /** TFLOPS the backend's own best case reached in this run. */
  tflops: number;
  how: string;
}

export interface BenchJobResult {
  rows: BenchRow[];
  peak: BackendPeak;
  blas: string;
  compiles: number;
}

export interface JobContext {
  emit(event: string, data: Record<string, unknown>): void;
  cancelled(): boolean;
  /** Set to non-zero when the job is cancelled, so native timing loops stop without a round trip. */
  stop?: Int32Array;
}

/** How far each backend may be from the float64 reference before its timings mean nothing. */
export const TOLERANCE: Record<BackendName, number> = { cpu: 1e-4, ane: 2e-2 };

export class CancelledError extends Error {}

/** A conv stack with weights ~ U(-a, a), variance 1/C, so that activations keep their scale through D layers. */
export function randomStack(config: StackConfig, seed: number): ConvStack {
  const rng = new Random(seed);
  const a = Math.sqrt(3 / config.channels);
  const weights = Array.from({ length: config.depth }, () => {
    const w = new Float32Array(config.channels * config.channels);
    for (let i = 0; i < w.length; i++) w[i] = (rng.next() * 2 - 1) * a;
    return w;
  });
  return { channels: Array(config.depth + 1).fill(config.channels), spatial: config.spatial, weights };
}

export function randomInput(elements: number, seed: number): Float32Array {
  return new Random(seed ^ 0x5bd1e995).fill(new Float32Array(elements));
}

/**
 * Checks one stack on a backend against the float64 reference, on a few spatial columns.
 * The ANE is checked against the weights and input it really sees (rounded to fp16).
 */
export async function checkStack(addon: NativeAddon, backend: BackendName, stack: ConvStack, graph: Parameters<NativeAddon["evaluate"]>[0], input: Float32Array, seed: number): Promise<number> {
  const output = new Float32Array(stack.channels.at(-1)! * stack.spatial);
  await addon.evaluate(graph, input, output);
  const rng = new Random(seed + 17);
  const columns = Array.from({ length: Math.min(4, stack.spatial) }, () => Math.floor(rng.next() * stack.spatial));
  const seen: ConvStack = backend === "ane" ? { ...stack, weights: stack.weights.map(roundToFloat16) } : stack;
  const seenInput = backend === "ane" ? roundToFloat16(input) : input;
  return relativeError(output, stack.spatial, referenceColumns(seen, seenInput, columns), columns);
}

/** A row for a config that did not give a timing: the benchmark goes on with the next one. */
export function failedRow(backend: string, config: StackConfig, error: string, measured: Partial<BenchRow> = {}): BenchRow {
  return {
    backend,
    status: "failed",
    error,
    ...config,
    weightMB: weightBytes(config, backend === "ane" ? 2 : 4) / 2 ** 20,
    gflop: gflopPerEval(config),
    msMedian: NaN,
    msP10: NaN,
    msP90: NaN,
    tflops: NaN,
    relError: NaN,
    compileMs: NaN,
    ...measured,
  };
}

/** The first sentence of an error, for a table cell. */
function reason(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
}

/**
 * Compiles, checks and times each config in turn. A config that fails (the compiler rejects its
 * shape, an evaluation fails, or its output is not the reference's) becomes a failed row and the
 * next config runs: chips differ in which shapes they accept (M3 Pro compiled only 512 channels in
 * maderix/ANE's community results), and one refusal must not hide the others' numbers.
 */
export async function runBenchJob(addon: NativeAddon, params: BenchJobParams, ctx: JobContext): Promise<BenchJobResult> {
  const { backend } = params;
  const rows: BenchRow[] = [];
  const first = params.firstIndex ?? 0;
  const total = first + params.configs.length;
  const push = (row: BenchRow, index: number) => {
    rows.push(row);
    ctx.emit("row", { row, index, total });
  };
  for (const [i, config] of params.configs.entries()) {
    if (ctx.cancelled()) throw new CancelledError("cancelled");
    const index = first + i;
    const seed = params.seed + index * 7919;
    const stack = randomStack(config, seed);
    const input = randomInput(config.channels * config.spatial, seed);
    const compileStart = performance.now();
    let graph: GraphHandle;
    try {
      graph = await addon.compile(backend, describeFor(backend, stack, params.weightFiles ?? 1));
    } catch (error) {
      push(failedRow(backend, config, `compile failed: ${reason(error)}`, { compileMs: performance.now() - compileStart }), index);
      continue;
    }
    const compileMs = performance.now() - compileStart;
    try {
      const relError = await checkStack(addon, backend, stack, graph, input, seed);
      if (!(relError <= TOLERANCE[backend])) {
        push(failedRow(backend, config, `wrong result: differs from the float64 reference by ${relError.toExponential(2)} (limit ${TOLERANCE[backend]}), so it was not timed`, { relError, compileMs }), index);
        continue;
      }
      const times = await addon.time(graph, input, params.warmup, params.iters, ctx.stop);
      if (ctx.cancelled()) throw new CancelledError("cancelled");
      const timing = summarize(times);
      const gflop = gflopPerEval(config);
      push(
        {
          backend,
          status: "ok",
          ...config,
          weightMB: weightBytes(config, backend === "ane" ? 2 : 4) / 2 ** 20,
          gflop,
          msMedian: timing.median,
          msP10: timing.p10,
          msP90: timing.p90,
          tflops: gflop / timing.median,
          relError,
          compileMs,
        },
        index,
      );
    } catch (error) {
      if (error instanceof CancelledError) throw error;
      push(failedRow(backend, config, `evaluation failed: ${reason(error)}`, { compileMs }), index);
    } finally {
      addon.release(graph);
    }
  }
  const peak = await measurePeak(addon, backend, rows, ctx);
  return { rows, peak, blas: addon.blas(), compiles: addon.compiles(backend) };
}

/**
 * The honest ceiling of each backend: the cpu's is a plain 2048² sgemm through the same BLAS, in
 * the same run; the ANE has no public peak kernel, so its best measured stack stands in.
 */
async function measurePeak(addon: NativeAddon, backend: BackendName, rows: BenchRow[], ctx: JobContext): Promise<BackendPeak> {
  if (backend === "cpu") {
    if (ctx.cancelled()) throw new CancelledError("cancelled");
    const n = 2048;
    const timing = summarize(await addon.sgemm(n, 1, 5));
    // GFLOP per millisecond is TFLOPS.
    return { tflops: (2 * n ** 3) / 1e9 / timing.median, how: `sgemm ${n}² (${addon.blas().split(" ")[0]})` };
  }
  const measured = rows.filter((r) => r.status === "ok");
  if (measured.length === 0) return { tflops: NaN, how: "no stack ran in this run" };
  return { tflops: Math.max(...measured.map((r) => r.tflops)), how: "best stack measured in this run" };
}

export function describeConfig(c: StackConfig): string {
  return `${c.depth}x conv ${c.channels}ch sp${c.spatial}`;
}
