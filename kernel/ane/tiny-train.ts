/**
 * The tiny training run of maderix/ANE (training/tiny_train.m at d91c984): its shapes, data, initial
 * weights and hyper-parameters, and the figures a reproduction reported for it.
 *
 * x [S=16, D=64] -> W1 [H=128, D] -> ReLU -> W2 [D, H] -> y, trained to reproduce x (MSE), with
 * x[t, i] = sin((t·D + i)·0.1) and W1[i] = 0.01·sin(1.3·i + 0.7), W2[i] = 0.01·cos(0.9·i + 1.1).
 * Tensors here are channel-first [C, S] (element (c, s) at c·S + s), the layout the kernels take.
 */
export const SHAPES = { S: 16, D: 64, H: 128 } as const;

/** maderix's hyper-parameters: SGD at 1.0, 10 steps per weight update, 100 compiles per process. */
export const TINY_TRAIN_DEFAULTS = { steps: 2000, lr: 1.0, accum: 10, compileBudget: 100 } as const;

/** The stale batch trained while the next kernels compile is applied at half the learning rate. */
export const STALE_BATCH_LR_SCALE = 0.5;

/** The run stops early once the loss is below this, as maderix's does. */
export const CONVERGED_LOSS = 1e-6;

const f = Math.fround;

/** The input, also the target: x[t, i] = sin((t·D + i)·0.1) in float arithmetic, stored as [D, S]. */
export function tinyData(): Float32Array {
  const { S, D } = SHAPES;
  const x = new Float32Array(D * S);
  for (let t = 0; t < S; t++) for (let i = 0; i < D; i++) x[i * S + t] = Math.sin(f(f(t * D + i) * f(0.1)));
  return x;
}

/** W1 [H, D] and W2 [D, H], row-major [out, in]. */
export function tinyInitialWeights(): { W1: Float32Array; W2: Float32Array } {
  const { D, H } = SHAPES;
  const W1 = new Float32Array(H * D);
  const W2 = new Float32Array(D * H);
  for (let i = 0; i < W1.length; i++) W1[i] = f(0.01) * Math.sin(f(f(i * f(1.3)) + f(0.7)));
  for (let i = 0; i < W2.length; i++) W2[i] = f(0.01) * Math.cos(f(f(i * f(0.9)) + f(1.1)));
  return { W1, W2 };
}

/**
 * What the reproduction write-up in the project brief reports for 2,000 steps with the defaults
 * above on an Apple ANE (these figures are not in maderix/ANE's repository).
 */
export const TINY_TRAIN_REFERENCE = {
  source: "reproduction write-up (project brief), ANE",
  steps: 2000,
  firstLoss: 0.5009,
  finalLoss: 0.0014,
  /** "restarts at steps ~480 and ~960"; the write-up names these two. */
  restartSteps: [480, 960],
  aneGflops: [1, 2] as const,
} as const;
