import type { BackendName, GraphHandle, NativeAddon } from "./addon.js";
import { readCheckpoint, writeCheckpoint, type TrainCheckpoint } from "./checkpoint.js";
import type { JobContext } from "./bench-job.js";
import { describeFor } from "./stack.js";
import { CONVERGED_LOSS, SHAPES, STALE_BATCH_LR_SCALE, tinyData, tinyInitialWeights } from "./tiny-train.js";

/**
 * maderix/ANE's tiny_train schedule in one worker. Four kernels run on the backend (W1 and W2
 * forward, W2ᵀ and W1ᵀ backward); ReLU, the MSE loss, dW and SGD run here. Weights are baked in at
 * compile time, so an iteration is:
 *
 *   1. a batch of `accum` steps with the current kernels, its averaged gradient applied at `lr`;
 *   2. the next four kernels compiled from the updated weights in the background, while
 *   3. a second ("stale") batch runs with the same, now one update old, kernels and is applied at
 *      half the learning rate;
 *   4. the new kernels replace the old; a checkpoint is written.
 *
 * A worker stops before an iteration that its compile budget cannot hold, and a fresh worker resumes
 * from the checkpoint. A compile that fails ends the worker with `compile_failed`, at the last
 * checkpoint: the fresh worker that resumes recomputes the steps since then exactly.
 */
export { SHAPES } from "./tiny-train.js";
export const KERNELS_PER_UPDATE = 4;

export interface TrainJobParams {
  checkpoint: string;
  steps: number;
  accum: number;
  lr: number;
  backend: BackendName;
  compileBudget: number;
  resume: boolean;
}

export interface TrainJobResult {
  status: "completed" | "budget" | "interrupted" | "compile_failed";
  /** The step the checkpoint holds (for compile_failed: the last one written, before the failure). */
  step: number;
  loss: number;
  compileMs: number;
  hiddenCompileMs: number;
  trainMs: number;
  batches: number;
  staleBatches: number;
  /** Compiles over the whole run (as checkpointed), and in this worker. */
  compiles: number;
  workerCompiles: number;
  checkpoint: string;
  /** Why the compile failed. */
  error?: string;
}

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c]!;
  return t;
}

interface Kernels {
  w1: GraphHandle;
  w2: GraphHandle;
  w2t: GraphHandle;
  w1t: GraphHandle;
}

type Compiled = { ok: true; kernels: Kernels; ms: number } | { ok: false; error: string; ms: number };

/** The four kernels for W1, W2, one after another (as maderix's serial compile queue does). */
async function compileKernels(addon: NativeAddon, backend: BackendName, W1: Float32Array, W2: Float32Array): Promise<Compiled> {
  const { S, D, H } = SHAPES;
  const started = performance.now();
  const made: GraphHandle[] = [];
  const linear = async (w: Float32Array, cin: number, cout: number) => {
    const g = await addon.compile(backend, describeFor(backend, { channels: [cin, cout], spatial: S, weights: [w] }));
    made.push(g);
    return g;
  };
  try {
    const w1 = await linear(W1, D, H);
    const w2 = await linear(W2, H, D);
    const w2t = await linear(transpose(W2, D, H), D, H);
    const w1t = await linear(transpose(W1, H, D), H, D);
    return { ok: true, kernels: { w1, w2, w2t, w1t }, ms: performance.now() - started };
  } catch (error) {
    for (const g of made) addon.release(g);
    return { ok: false, error: (error as Error).message, ms: performance.now() - started };
  }
}

function releaseKernels(addon: NativeAddon, kernels: Kernels | undefined): void {
  if (!kernels) return;
  for (const k of [kernels.w1, kernels.w2, kernels.w2t, kernels.w1t]) addon.release(k);
}

/** g[r, c] += sum_s left[r, s] * right[c, s] (an outer product over the spatial axis). */
function accumulate(g: Float64Array, left: Float32Array, right: Float32Array, rows: number, cols: number, S: number): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let sum = 0;
      for (let s = 0; s < S; s++) sum += left[r * S + s]! * right[c * S + s]!;
      g[r * cols + c] = g[r * cols + c]! + sum;
    }
  }
}

function freshState(params: TrainJobParams): TrainCheckpoint {
  const { W1, W2 } = tinyInitialWeights();
  return {
    version: 2,
    step: 0,
    loss: NaN,
    shapes: { ...SHAPES },
    lr: params.lr,
    accum: params.accum,
    backend: params.backend,
    compileMs: 0,
    hiddenCompileMs: 0,
    trainMs: 0,
    compiles: 0,
    batches: 0,
    staleBatches: 0,
    W1,
    W2,
    kernelW1: W1.slice(),
    kernelW2: W2.slice(),
  };
}

export async function runTrainJob(addon: NativeAddon, params: TrainJobParams, ctx: JobContext): Promise<TrainJobResult> {
  const { S, D, H } = SHAPES;
  const state = (params.resume ? readCheckpoint(params.checkpoint) : undefined) ?? freshState(params);
  const compilesAtStart = addon.compiles(params.backend);
  const workerCompiles = () => addon.compiles(params.backend) - compilesAtStart;
  let saved = { ...state, W1: state.W1, W2: state.W2 };
  const save = () => {
    writeCheckpoint(params.checkpoint, state);
    saved = { ...state, W1: state.W1.slice(), W2: state.W2.slice(), kernelW1: state.kernelW1, kernelW2: state.kernelW2 };
  };
  const result = (status: TrainJobResult["status"], from: TrainCheckpoint, error?: string): TrainJobResult => ({
    status,
    step: from.step,
    loss: from.loss,
    compileMs: from.compileMs,
    hiddenCompileMs: from.hiddenCompileMs,
    trainMs: from.trainMs,
    batches: from.batches,
    staleBatches: from.staleBatches,
    compiles: from.compiles,
    workerCompiles: workerCompiles(),
    checkpoint: params.checkpoint,
    ...(error === undefined ? {} : { error }),
  });
  if (!params.resume) save();

  const x = tinyData();
  const { W1, W2 } = state;
  const aW1 = new Float64Array(H * D);
  const aW2 = new Float64Array(D * H);
  const h = new Float32Array(H * S);
  const a = new Float32Array(H * S);
  const y = new Float32Array(D * S);
  const dy = new Float32Array(D * S);
  const dh = new Float32Array(H * S);
  const dx = new Float32Array(D * S);

  /** One batch of up to `accum` steps with `k`, its averaged gradient applied at lr · scale. */
  const batch = async (k: Kernels, scale: number) => {
    const started = performance.now();
    const n = Math.min(params.accum, params.steps - state.step);
    const stale = scale !== 1;
    aW1.fill(0);
    aW2.fill(0);
    for (let i = 0; i < n; i++) {
      await addon.evaluate(k.w1, x, h);
      for (let j = 0; j < h.length; j++) a[j] = h[j]! > 0 ? h[j]! : 0;
      await addon.evaluate(k.w2, a, y);
      let loss = 0;
      for (let j = 0; j < y.length; j++) {
        const diff = y[j]! - x[j]!;
        loss += diff * diff;
        dy[j] = (2 * diff) / (S * D);
      }
      loss /= S * D;
      await addon.evaluate(k.w2t, dy, dh);
      for (let j = 0; j < dh.length; j++) if (h[j]! <= 0) dh[j] = 0;
      // dx is not needed by a first layer; it is computed because the reproduction runs all four kernels.
      await addon.evaluate(k.w1t, dh, dx);
      accumulate(aW2, dy, a, D, H, S);
      accumulate(aW1, dh, x, H, D, S);
      state.step += 1;
      state.loss = loss;
      ctx.emit("progress", { step: state.step, steps: params.steps, loss, stale, compiles: state.compiles, trainMs: state.trainMs, compileMs: state.compileMs });
    }
    const rate = (params.lr * scale) / n;
    for (let j = 0; j < W1.length; j++) W1[j] = W1[j]! - rate * aW1[j]!;
    for (let j = 0; j < W2.length; j++) W2[j] = W2[j]! - rate * aW2[j]!;
    state.batches += 1;
    if (stale) state.staleBatches += 1;
    state.trainMs += performance.now() - started;
  };

  const first = await compileKernels(addon, params.backend, state.kernelW1, state.kernelW2);
  if (!first.ok) return result("compile_failed", saved, first.error);
  state.compileMs += first.ms;
  state.compiles += KERNELS_PER_UPDATE;
  let kernels: Kernels | undefined = first.kernels;
  try {
    while (state.step < params.steps) {
      if (ctx.cancelled()) {
        save();
        return result("interrupted", state);
      }
      if (workerCompiles() + KERNELS_PER_UPDATE > params.compileBudget) {
        save();
        return result("budget", state);
      }
      await batch(kernels, 1);
      if (state.step < params.steps) {
        const snapshot = { W1: W1.slice(), W2: W2.slice() };
        const pending = compileKernels(addon, params.backend, snapshot.W1, snapshot.W2);
        try {
          await batch(kernels, STALE_BATCH_LR_SCALE);
        } catch (error) {
          const late = await pending;
          if (late.ok) releaseKernels(addon, late.kernels);
          throw error;
        }
        const waited = performance.now();
        const next = await pending;
        const exposed = performance.now() - waited;
        if (!next.ok) return result("compile_failed", saved, next.error);
        releaseKernels(addon, kernels);
        kernels = next.kernels;
        state.kernelW1 = snapshot.W1;
        state.kernelW2 = snapshot.W2;
        state.compileMs += next.ms;
        state.hiddenCompileMs += Math.max(0, next.ms - exposed);
        state.compiles += KERNELS_PER_UPDATE;
      }
      save();
      if (state.loss < CONVERGED_LOSS) break;
    }
    return result("completed", state);
  } finally {
    releaseKernels(addon, kernels);
  }
}
