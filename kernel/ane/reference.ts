import type { ConvStack } from "./stack.js";

/**
 * The float64 reference of a conv stack. A 1x1 conv treats every spatial position on its own, so
 * the reference is computed for a few columns only: the same check at a fraction of the cost.
 * Returns y[c, k] for each requested column k (row-major [Cout, columns.length]).
 */
export function referenceColumns(stack: ConvStack, input: Float32Array, columns: readonly number[]): Float64Array {
  const S = stack.spatial;
  const k = columns.length;
  let x = new Float64Array(stack.channels[0]! * k);
  for (let c = 0; c < stack.channels[0]!; c++) {
    for (let j = 0; j < k; j++) x[c * k + j] = input[c * S + columns[j]!]!;
  }
  stack.weights.forEach((w, layer) => {
    const cin = stack.channels[layer]!;
    const cout = stack.channels[layer + 1]!;
    const y = new Float64Array(cout * k);
    for (let o = 0; o < cout; o++) {
      const row = o * cin;
      for (let j = 0; j < k; j++) {
        let sum = 0;
        for (let i = 0; i < cin; i++) sum += w[row + i]! * x[i * k + j]!;
        y[o * k + j] = sum;
      }
    }
    x = y;
  });
  return x;
}

/** ||y - ref|| / ||ref|| over the reference columns. */
export function relativeError(output: Float32Array, spatial: number, reference: Float64Array, columns: readonly number[]): number {
  const k = columns.length;
  let diff = 0;
  let norm = 0;
  for (let c = 0; c < reference.length / k; c++) {
    for (let j = 0; j < k; j++) {
      const r = reference[c * k + j]!;
      const d = output[c * spatial + columns[j]!]! - r;
      diff += d * d;
      norm += r * r;
    }
  }
  return norm === 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
}
