import { randomBytes } from "node:crypto";
import { escapeHtml } from "./format.js";
import { titleText, type Datum, type FigureSpec, type PlotlyAxis, type PlotlyTrace } from "./plotly-types.js";

/**
 * A static SVG drawing of a Plotly figure, made in Node without a browser, for clients that do
 * not run scripts (untrusted notebooks, nbconvert, GitHub). It covers the traces tunelab draws:
 * line/scatter (lines, markers or both, gaps at null), grouped or stacked bars, several traces,
 * linear, log and category axes, titles and a legend.
 */

/** Plotly's default colorway, so the static and the interactive figure agree. */
const COLORWAY = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const FONT = "font-family=\"-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\"";
const CHAR = 6.6;

// Coordinates are clamped so that extreme data (1e308 on a linear axis) still gives valid SVG.
const r2 = (n: number) => (Number.isNaN(n) ? "0" : (Math.round(Math.max(-1e6, Math.min(1e6, n)) * 100) / 100).toString());

function toNumber(v: Datum): number | null {
  if (v === null || v === undefined || v === "") return null;
  const n = typeof v === "number" ? v : Number(v);
  return Number.isFinite(n) ? n : null;
}

function values(a: ArrayLike<Datum> | undefined): Datum[] {
  return a ? Array.from(a) : [];
}

/** Plotly leaves out null, undefined and non-finite numbers. */
function missing(v: Datum): boolean {
  return v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v));
}

interface Tick {
  value: number;
  label: string;
}

interface Axis {
  log: boolean;
  categories: string[] | null;
  lo: number;
  hi: number;
  ticks: Tick[];
}

function niceStep(span: number, target: number): number {
  const raw = span / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function formatTick(v: number, step: number): string {
  if (v === 0) return "0";
  const abs = Math.abs(v);
  const trim = (s: string) => (s.includes(".") ? s.replace(/\.?0+$/, "") : s);
  if (abs >= 1e4) {
    for (const [div, suffix] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]] as const) {
      if (abs >= div) return `${trim((v / div).toFixed(Math.max(0, Math.min(3, Math.ceil(-Math.log10(step / div))))))}${suffix}`;
    }
  }
  if (abs < 1e-3) return trim(v.toExponential(1)).replace("e-", "e−");
  return trim(v.toFixed(Math.max(0, Math.min(6, Math.ceil(-Math.log10(step) - 1e-9)))));
}

function linearTicks(lo: number, hi: number, target: number): Tick[] {
  const step = niceStep(hi - lo, target);
  const ticks: Tick[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9 && ticks.length < 50; k++) {
    const value = k * step;
    ticks.push({ value, label: formatTick(value, step) });
  }
  return ticks;
}

/** Ticks of a log axis whose domain is in log10 units. */
function logTicks(lo: number, hi: number): Tick[] {
  const decades = hi - lo;
  if (decades < 0.7) {
    return linearTicks(10 ** lo, 10 ** hi, 4).map((t) => ({ value: Math.log10(t.value), label: t.label })).filter((t) => Number.isFinite(t.value));
  }
  const multipliers = decades <= 2.5 ? [1, 2, 5] : [1];
  const stride = Math.max(1, Math.ceil(decades / 8));
  const ticks: Tick[] = [];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
    if (k % stride !== 0) continue;
    for (const m of multipliers) {
      const value = Math.log10(m * 10 ** k);
      if (value >= lo - 1e-9 && value <= hi + 1e-9) ticks.push({ value, label: formatTick(m * 10 ** k, m * 10 ** k) });
    }
  }
  return ticks;
}

function isCategorical(axis: PlotlyAxis | undefined, columns: Datum[][]): boolean {
  if (axis?.type === "category") return true;
  if (axis?.type === "linear" || axis?.type === "log") return false;
  return columns.some((col) => col.some((v) => typeof v === "string" && toNumber(v) === null));
}

function buildAxis(spec: PlotlyAxis | undefined, columns: Datum[][], options: { includeZero: boolean; pad: number; target: number }): Axis {
  if (isCategorical(spec, columns)) {
    const categories: string[] = [];
    const seen = new Set<string>();
    for (const col of columns) for (const v of col) if (!missing(v) && !seen.has(String(v))) (seen.add(String(v)), categories.push(String(v)));
    const every = Math.max(1, Math.ceil(categories.length / 20));
    return {
      log: false,
      categories,
      lo: -0.5,
      hi: categories.length - 0.5,
      ticks: categories.map((c, i) => ({ value: i, label: c })).filter((_, i) => i % every === 0),
    };
  }
  const log = spec?.type === "log";
  let nums = columns.flat().map(toNumber).filter((n): n is number => n !== null);
  if (log) nums = nums.filter((n) => n > 0).map(Math.log10);
  let lo: number;
  let hi: number;
  if (spec?.range && Number.isFinite(spec.range[0]) && Number.isFinite(spec.range[1]) && spec.range[0] !== spec.range[1]) {
    [lo, hi] = [Math.min(spec.range[0], spec.range[1]), Math.max(spec.range[0], spec.range[1])];
  } else {
    lo = nums.length ? Math.min(...nums) : 0;
    hi = nums.length ? Math.max(...nums) : 1;
    if (options.includeZero && !log) [lo, hi] = [Math.min(lo, 0), Math.max(hi, 0)];
    if (hi === lo) {
      const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
      [lo, hi] = [lo - d, hi + d];
    }
    const pad = (hi - lo) * options.pad;
    lo = options.includeZero && lo === 0 ? 0 : lo - pad;
    hi = options.includeZero && hi === 0 ? 0 : hi + pad;
  }
  return { log, categories: null, lo, hi, ticks: log ? logTicks(lo, hi) : linearTicks(lo, hi, options.target) };
}

/** A datum's position on an axis, in axis units (category index, log10 value or plain number). */
function position(axis: Axis, v: Datum): number | null {
  if (axis.categories) {
    if (missing(v)) return null;
    const i = axis.categories.indexOf(String(v));
    return i < 0 ? null : i;
  }
  const n = toNumber(v);
  if (n === null) return null;
  if (axis.log) return n > 0 ? Math.log10(n) : null;
  return n;
}

function traceColor(trace: PlotlyTrace, index: number, colorway: readonly string[]): string {
  const c = trace.line?.color ?? (typeof trace.marker?.color === "string" ? trace.marker.color : undefined);
  return c ?? colorway[index % colorway.length]!;
}

function isBar(trace: PlotlyTrace): boolean {
  return trace.type === "bar";
}

function defaultX(trace: PlotlyTrace): Datum[] {
  const xs = values(trace.x);
  return xs.length ? xs : values(trace.y).map((_, i) => i);
}

const DASHES: Record<string, string> = { dash: "6,4", dot: "2,3", dashdot: "6,3,2,3", longdash: "10,4" };

export function renderSvg(spec: FigureSpec): string {
  const layout = spec.layout ?? {};
  const traces = spec.data.filter((t) => t.type === undefined || t.type === "scatter" || t.type === "scattergl" || t.type === "bar");
  const colorway = layout.colorway?.length ? layout.colorway : COLORWAY;
  const size = (v: unknown, fallback: number, min: number) => (typeof v === "number" && Number.isFinite(v) ? Math.max(min, Math.min(4000, Math.round(v))) : fallback);
  const width = size(layout.width, 720, 200);
  const height = size(layout.height, 420, 150);
  const title = titleText(layout.title);
  const xTitle = titleText(layout.xaxis?.title);
  const yTitle = titleText(layout.yaxis?.title);
  const barmode = layout.barmode ?? "group";
  const bars = traces.filter(isBar);

  const xAxis = buildAxis(layout.xaxis, traces.map(defaultX), { includeZero: false, pad: 0, target: 7 });
  if (bars.length && !xAxis.categories && !layout.xaxis?.range) {
    // Bars on a numeric axis need half a bar's room beyond the first and last x.
    const half = barSlot(xAxis, bars, 1).width * bars.length * 0.625;
    xAxis.lo -= half;
    xAxis.hi += half;
    xAxis.ticks = xAxis.log ? logTicks(xAxis.lo, xAxis.hi) : linearTicks(xAxis.lo, xAxis.hi, 7);
  }
  const yColumns = barmode === "stack" && bars.length > 1 ? [...traces.filter((t) => !isBar(t)).map((t) => values(t.y)), stackedTotals(bars)] : traces.map((t) => values(t.y));
  const yAxis = buildAxis(layout.yaxis, yColumns, { includeZero: bars.length > 0, pad: 0.05, target: 6 });

  const legendItems = traces.map((t, i) => ({ trace: t, index: i })).filter(({ trace }) => trace.showlegend !== false);
  const showLegend = (layout.showlegend ?? traces.length > 1) && legendItems.length > 0;
  const legendNames = legendItems.map(({ trace, index }) => trace.name ?? `trace ${index}`);
  const legendWidth = showLegend ? Math.min(220, Math.max(...legendNames.map((n) => n.length)) * CHAR + 44) : 0;

  const yLabelWidth = Math.max(...yAxis.ticks.map((t) => t.label.length), 1) * CHAR;
  const left = Math.round(Math.max(48, yLabelWidth + 16 + (yTitle ? 22 : 0)));
  const right = Math.round(20 + legendWidth);
  const top = title ? 46 : 18;
  const bottom = 40 + (xTitle ? 22 : 0);
  const plotW = Math.max(40, width - left - right);
  const plotH = Math.max(40, height - top - bottom);
  const px = (v: number) => left + ((v - xAxis.lo) / (xAxis.hi - xAxis.lo)) * plotW;
  const py = (v: number) => top + plotH - ((v - yAxis.lo) / (yAxis.hi - yAxis.lo)) * plotH;
  const clip = `tl-clip-${randomBytes(4).toString("hex")}`;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<defs><clipPath id="${clip}"><rect x="${left}" y="${top}" width="${plotW}" height="${plotH}"/></clipPath></defs>`);
  if (title) out.push(`<text x="${r2(width / 2)}" y="28" text-anchor="middle" font-size="16" fill="#2a3f5f">${escapeHtml(title)}</text>`);

  // Grid and ticks.
  const grid: string[] = [];
  for (const t of yAxis.ticks) {
    const y = r2(py(t.value));
    if (layout.yaxis?.showgrid !== false) grid.push(`<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#e5e8ee" stroke-width="1"/>`);
    grid.push(`<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#444">${escapeHtml(t.label)}</text>`);
  }
  for (const t of xAxis.ticks) {
    const x = r2(px(t.value));
    if (layout.xaxis?.showgrid !== false && !xAxis.categories) grid.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + plotH}" stroke="#eef0f4" stroke-width="1"/>`);
    grid.push(`<line x1="${x}" y1="${top + plotH}" x2="${x}" y2="${top + plotH + 4}" stroke="#888"/>`);
    grid.push(`<text x="${x}" y="${top + plotH + 18}" text-anchor="middle" fill="#444">${escapeHtml(t.label)}</text>`);
  }
  out.push(`<g class="grid">${grid.join("")}</g>`);
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#b8bfca" stroke-width="1"/>`);
  if (xTitle) out.push(`<text x="${r2(left + plotW / 2)}" y="${height - 10}" text-anchor="middle" font-size="13" fill="#2a3f5f">${escapeHtml(xTitle)}</text>`);
  if (yTitle) {
    const cx = 16;
    const cy = r2(top + plotH / 2);
    out.push(`<text x="${cx}" y="${cy}" transform="rotate(-90 ${cx} ${cy})" text-anchor="middle" font-size="13" fill="#2a3f5f">${escapeHtml(yTitle)}</text>`);
  }

  // Traces.
  const body: string[] = [];
  const slot = barSlot(xAxis, bars, plotW / (xAxis.hi - xAxis.lo));
  const stackBase = new Map<number, [number, number]>();
  const zero = yAxis.log ? yAxis.lo : Math.max(yAxis.lo, Math.min(yAxis.hi, 0));
  let barIndex = 0;
  traces.forEach((trace, index) => {
    const color = traceColor(trace, index, colorway);
    const xs = defaultX(trace);
    const ys = values(trace.y);
    const n = Math.min(xs.length, ys.length);
    if (isBar(trace)) {
      if (yAxis.categories) return;
      const offset = barmode === "group" ? (barIndex - (bars.length - 1) / 2) * slot.width : 0;
      const w = barmode === "group" ? slot.width : slot.width * bars.length;
      const perPoint = pointColors(trace);
      for (let i = 0; i < n; i++) {
        const xv = position(xAxis, xs[i]);
        const yRaw = toNumber(ys[i]);
        if (xv === null || yRaw === null) continue;
        let from = yAxis.log ? 10 ** zero : 0;
        let to = yRaw;
        if (barmode === "stack") {
          const [pos, neg] = stackBase.get(xv) ?? [0, 0];
          from = yRaw >= 0 ? pos : neg;
          to = from + yRaw;
          stackBase.set(xv, yRaw >= 0 ? [to, neg] : [pos, to]);
        }
        const y0 = yAxis.log ? (from > 0 ? Math.log10(from) : yAxis.lo) : from;
        const y1 = yAxis.log ? (to > 0 ? Math.log10(to) : yAxis.lo) : to;
        const top1 = py(Math.max(y0, y1));
        const h = Math.abs(py(y0) - py(y1));
        const x = px(xv) + offset - w / 2;
        body.push(`<rect x="${r2(x + w * 0.05)}" y="${r2(top1)}" width="${r2(w * 0.9)}" height="${r2(h)}" fill="${escapeHtml(perPoint?.[i] ?? color)}"/>`);
      }
      barIndex++;
      return;
    }
    const mode = trace.mode ?? (n < 20 ? "lines+markers" : "lines");
    const points = Array.from({ length: n }, (_, i) => {
      const xv = position(xAxis, xs[i]);
      const yv = position(yAxis, ys[i]);
      return xv === null || yv === null ? null : ([px(xv), py(yv)] as const);
    });
    if (mode.includes("lines")) {
      let d = "";
      let pen = false;
      for (const p of points) {
        if (!p) {
          pen = false;
          continue;
        }
        d += `${pen ? "L" : "M"}${r2(p[0])} ${r2(p[1])}`;
        pen = true;
      }
      const dash = DASHES[trace.line?.dash ?? ""];
      if (d) body.push(`<path d="${d}" fill="none" stroke="${escapeHtml(color)}" stroke-width="${trace.line?.width ?? 2}" stroke-linejoin="round" stroke-linecap="round"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`);
    }
    if (mode.includes("markers")) {
      const r = r2(Math.max(1, (trace.marker?.size ?? 6) / 2));
      const perPoint = pointColors(trace);
      points.forEach((p, i) => {
        if (p) body.push(`<circle cx="${r2(p[0])}" cy="${r2(p[1])}" r="${r}" fill="${escapeHtml(perPoint?.[i] ?? color)}"/>`);
      });
    }
  });
  out.push(`<g clip-path="url(#${clip})">${body.join("")}</g>`);

  if (showLegend) {
    const lx = width - legendWidth + 12;
    const items = legendItems.map(({ trace, index }, row) => {
      const y = top + 8 + row * 20;
      const color = escapeHtml(traceColor(trace, index, colorway));
      const swatch = isBar(trace)
        ? `<rect x="${lx}" y="${y - 6}" width="20" height="12" fill="${color}"/>`
        : `<line x1="${lx}" y1="${y}" x2="${lx + 20}" y2="${y}" stroke="${color}" stroke-width="2"/>`;
      return `${swatch}<text x="${lx + 26}" y="${y}" dominant-baseline="middle" fill="#2a3f5f">${escapeHtml(legendNames[row]!)}</text>`;
    });
    out.push(`<g class="legend">${items.join("")}</g>`);
  }
  out.push("</svg>");
  return out.join("\n");
}

/** The totals of stacked bars per x, so the y axis covers the tallest stack. */
function stackedTotals(bars: PlotlyTrace[]): Datum[] {
  const pos = new Map<string, number>();
  const neg = new Map<string, number>();
  for (const t of bars) {
    const xs = defaultX(t);
    const ys = values(t.y);
    xs.forEach((x, i) => {
      const y = toNumber(ys[i]);
      if (y === null) return;
      const key = String(x);
      const m = y >= 0 ? pos : neg;
      m.set(key, (m.get(key) ?? 0) + y);
    });
  }
  return [...pos.values(), ...neg.values()];
}

/** The width of one bar: the band of a category, or the closest spacing of numeric x values. */
function barSlot(axis: Axis, bars: PlotlyTrace[], pxPerUnit: number): { width: number } {
  if (!bars.length) return { width: 0 };
  let unit = 1;
  if (!axis.categories) {
    const xs = [...new Set(bars.flatMap((t) => defaultX(t).map((v) => position(axis, v)).filter((v): v is number => v !== null)))].sort((a, b) => a - b);
    let gap = Infinity;
    for (let i = 1; i < xs.length; i++) gap = Math.min(gap, xs[i]! - xs[i - 1]!);
    unit = Number.isFinite(gap) && gap > 0 ? gap : (axis.hi - axis.lo) / 2;
  }
  return { width: (unit * pxPerUnit * 0.8) / (bars.length || 1) };
}

function pointColors(trace: PlotlyTrace): readonly string[] | null {
  const color = trace.marker?.color;
  return Array.isArray(color) ? (color as readonly string[]) : null;
}
