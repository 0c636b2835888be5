import type { BackendName, GraphHandle, NativeAddon } from "./addon.js";
import { readCheckpoint, writeCheckpoint, type TrainCheckpoint } from "./checkpoint.js";
import type { JobContext } from "./bench-job.js";
import { Random } from "./random.js";
import { describeFor } from "./stack.js";

/**
 * The tiny two-layer reproduction: x [S=16, D=64] -> W1 [H=128, D] -> ReLU -> W2 [D, H] -> y, MSE
 * against the identity, SGD with gradient accumulation. Four kernels per weight update run on the
 * backend (W1 and W2 forward, W2ᵀ and W1ᵀ backward); ReLU, the loss, dW and the update run here.
 * Weights are baked in at compile time, so every update recompiles the four kernels; the worker
 * stops at the compile budget with a checkpoint and a fresh worker resumes from it.
 */
export const SHAPES = { S: 16, D: 64, H: 128 } as const;
export const KERNELS_PER_UPDATE = 4;
/** The run cycles through a few fixed batches, so the loss can fall as far as the reference's. */
export const BATCHES = 4;

export interface TrainJobParams {
  checkpoint: string;
  steps: number;
  accum: number;
  lr: number;
  backend: BackendName;
  compileBudget: number;
  seed: number;
  resume: boolean;
}

export interface TrainJobResult {
  status: "completed" | "budget" | "interrupted";
  step: number;
  loss: number;
  compileMs: number;
  trainMs: number;
  /** Compiles over the whole run, and in this worker. */
  compiles: number;
  workerCompiles: number;
  checkpoint: string;
}

/** The batch for a step depends only on the seed and the step, so a resumed run sees the same data. */
export function batchFor(seed: number, step: number): Float32Array {
  const { S, D } = SHAPES;
  return new Random(seed * 1_000_003 + (step % BATCHES)).fill(new Float32Array(D * S), Math.SQRT1_2);
}

function initialWeights(seed: number): { W1: Float32Array; W2: Float32Array } {
  const { D, H } = SHAPES;
  const rng = new Random(seed);
  return { W1: rng.fill(new Float32Array(H * D), Math.sqrt(2 / D)), W2: rng.fill(new Float32Array(D * H), 0.1 * Math.sqrt(1 / H)) };
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

async function compileKernels(addon: NativeAddon, backend: BackendName, W1: Float32Array, W2: Float32Array): Promise<Kernels> {
  const { S, D, H } = SHAPES;
  const linear = (w: Float32Array, cin: number, cout: number) => addon.compile(backend, describeFor(backend, { channels: [cin, cout], spatial: S, weights: [w] }));
  return {
    w1: await linear(W1, D, H),
    w2: await linear(W2, H, D),
    w2t: await linear(transpose(W2, D, H), D, H),
    w1t: await linear(transpose(W1, H, D), H, D),
  };
}

function releaseKernels(addon: NativeAddon, kernels: Kernels | undefined): void {
  if (!kernels) return;
  for (const k of [kernels.w1, kernels.w2, kernels.w2t, kernels.w1t]) addon.release(k);
}

export async function runTrainJob(addon: NativeAddon, params: TrainJobParams, ctx: JobContext): Promise<TrainJobResult> {
  const { S, D, H } = SHAPES;
  const resumed = params.resume ? readCheckpoint(params.checkpoint) : undefined;
  const fresh = initialWeights(params.seed);
  const state: TrainCheckpoint = resumed ?? {
    version: 1,
    step: 0,
    loss: NaN,
    shapes: { S, D, H },
    lr: params.lr,
    accum: params.accum,
    seed: params.seed,
    backend: params.backend,
    compileMs: 0,
    trainMs: 0,
    compiles: 0,
    ...fresh,
  };
  const compilesAtStart = addon.compiles(params.backend);
  const workerCompiles = () => addon.compiles(params.backend) - compilesAtStart;
  const { W1, W2 } = state;
  const dW1 = new Float64Array(H * D);
  const dW2 = new Float64Array(D * H);
  const h = new Float32Array(H * S);
  const out = new Float32Array(D * S);
  const dy = new Float32Array(D * S);
  const da = new Float32Array(H * S);
  const dx = new Float32Array(D * S);
  let kernels: Kernels | undefined;

  const finish = (status: TrainJobResult["status"]): TrainJobResult => {
    releaseKernels(addon, kernels);
    // Checkpoints are only taken at update boundaries, where no gradient is half accumulated.
    if (state.step % params.accum === 0 || status === "completed") writeCheckpoint(params.checkpoint, state);
    return {
      status,
      step: state.step,
      loss: state.loss,
      compileMs: state.compileMs,
      trainMs: state.trainMs,
      compiles: state.compiles,
      workerCompiles: workerCompiles(),
      checkpoint: params.checkpoint,
    };
  };

  while (state.step < params.steps) {
    if (state.step % params.accum === 0) {
      if (ctx.cancelled()) return finish("interrupted");
      if (workerCompiles() + KERNELS_PER_UPDATE > params.compileBudget) return finish("budget");
      releaseKernels(addon, kernels);
      const started = performance.now();
      kernels = await compileKernels(addon, params.backend, W1, W2);
      state.compileMs += performance.now() - started;
      state.compiles += KERNELS_PER_UPDATE;
    }
    const k = kernels!;
    const started = performance.now();
    const x = batchFor(params.seed, state.step);
    await addon.evaluate(k.w1, x, h);
    const a = h.map((v) => (v > 0 ? v : 0));
    await addon.evaluate(k.w2, a, out);
    let loss = 0;
    for (let i = 0; i < out.length; i++) {
      const diff = out[i]! - x[i]!;
      loss += diff * diff;
      dy[i] = (2 * diff) / (S * D);
    }
    loss /= S * D;
    await addon.evaluate(k.w2t, dy, da);
    for (let i = 0; i < da.length; i++) if (h[i]! <= 0) da[i] = 0;
    // dx is not needed by a first layer; it is computed because the reproduction runs all four kernels.
    await addon.evaluate(k.w1t, da, dx);
    accumulate(dW2, dy, a, D, H, S);
    accumulate(dW1, da, x, H, D, S);
    state.step += 1;
    state.loss = loss;
    if (state.step % params.accum === 0) {
      const scale = params.lr / params.accum;
      for (let i = 0; i < W1.length; i++) W1[i] = W1[i]! - scale * dW1[i]!;
      for (let i = 0; i < W2.length; i++) W2[i] = W2[i]! - scale * dW2[i]!;
      dW1.fill(0);
      dW2.fill(0);
      state.trainMs += performance.now() - started;
      // A crash loses at most one update: the weights are tiny, so saving each one costs little.
      writeCheckpoint(params.checkpoint, state);
    } else state.trainMs += performance.now() - started;
    ctx.emit("progress", { step: state.step, steps: params.steps, loss, compiles: state.compiles, trainMs: state.trainMs, compileMs: state.compileMs });
  }
  return finish("completed");
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
