/** Order statistics of timings (ms), so a table shows a median and a spread, not a lucky minimum. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

export interface Timing {
  median: number;
  p10: number;
  p90: number;
  min: number;
}

export function summarize(ms: ArrayLike<number>): Timing {
  const sorted = Array.from(ms).sort((a, b) => a - b);
  return { median: quantile(sorted, 0.5), p10: quantile(sorted, 0.1), p90: quantile(sorted, 0.9), min: sorted[0] ?? NaN };
}
