/** Text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** Text inside a markdown table cell: pipes would end the cell and newlines the row. */
export function escapeMarkdownCell(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const PRECISE = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 4, useGrouping: false });

/**
 * Numbers as a person reads them in a results table: integers exact (grouped when large), large
 * values to one decimal, ordinary values to four significant digits, tiny or huge values (learning
 * rates, parameter counts in floats) in exponent form.
 */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (!Number.isFinite(n)) return n > 0 ? "∞" : "−∞";
  if (Number.isInteger(n)) return Math.abs(n) >= 1e15 ? n.toExponential(3) : Math.abs(n) >= 10_000 ? GROUPED.format(n) : String(n);
  const abs = Math.abs(n);
  if (abs >= 1e9 || abs < 1e-3) return n.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e");
  if (abs >= 100) return GROUPED.format(n);
  return PRECISE.format(n);
}

/** Any cell value as table text. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return formatNumber(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Seconds as `1.23 s`, `45.6 ms`, `12.3 µs`: the unit a person expects for that magnitude. */
export function formatDuration(seconds: number): string {
  const abs = Math.abs(seconds);
  if (abs >= 60) {
    const minutes = Math.floor(seconds / 60);
    return `${minutes} min ${(seconds - minutes * 60).toFixed(1)} s`;
  }
  if (abs >= 1) return `${seconds.toFixed(2)} s`;
  if (abs >= 1e-3) return `${(seconds * 1e3).toFixed(abs >= 0.1 ? 0 : abs >= 0.01 ? 1 : 2)} ms`;
  return `${(seconds * 1e6).toFixed(1)} µs`;
}
