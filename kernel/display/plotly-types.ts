/**
 * The part of Plotly's figure schema that tunelab draws itself (static SVG). Anything else in a
 * figure is passed through untouched to Plotly in the browser.
 */
export type Datum = number | string | null | undefined;

export interface PlotlyTrace {
  type?: string;
  name?: string;
  x?: ArrayLike<Datum>;
  y?: ArrayLike<Datum>;
  /** "lines", "markers", "lines+markers" (Plotly's default depends on the number of points). */
  mode?: string;
  showlegend?: boolean;
  marker?: { color?: string | readonly string[]; size?: number; [key: string]: unknown };
  line?: { color?: string; width?: number; dash?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export type PlotlyTitle = string | { text?: string; [key: string]: unknown };

export interface PlotlyAxis {
  title?: PlotlyTitle;
  type?: "linear" | "log" | "category" | "-" | string;
  /** In data units; for a log axis, in log10 units (Plotly's convention). */
  range?: readonly [number, number];
  showgrid?: boolean;
  [key: string]: unknown;
}

export interface PlotlyLayout {
  title?: PlotlyTitle;
  width?: number;
  height?: number;
  xaxis?: PlotlyAxis;
  yaxis?: PlotlyAxis;
  showlegend?: boolean;
  barmode?: "group" | "stack" | "overlay" | string;
  colorway?: readonly string[];
  [key: string]: unknown;
}

export interface FigureSpec {
  data: PlotlyTrace[];
  layout?: PlotlyLayout;
  config?: Record<string, unknown>;
}

export function titleText(title: PlotlyTitle | undefined): string {
  if (title === undefined) return "";
  return typeof title === "string" ? title : title.text ?? "";
}
