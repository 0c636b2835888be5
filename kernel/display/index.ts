/**
 * What notebook cells import to show results richly: `import { figure, table } from "tunelab/display"`.
 * Every value here displays itself when it is a cell's last expression.
 */
export { Bundle, html, markdown, text, withDisplay } from "./bundle.js";
export { Figure, figure, PLOTLY_MIME, type FigureOptions } from "./figure.js";
export { formatDuration, formatNumber, formatValue } from "./format.js";
export { LiveDisplay, type LiveDisplayOptions, type Renderable } from "./live.js";
export { DISPLAY, isDisplayable, toDisplayOutput, type DisplayOutput, type Displayable, type MimeBundle } from "./mime.js";
export type { FigureSpec, PlotlyAxis, PlotlyLayout, PlotlyTrace } from "./plotly-types.js";
export { Progress, progressBundle, progressLine, type ProgressState } from "./progress.js";
export { renderSvg } from "./svg.js";
export { Table, table, type ColumnTable, type TableInput, type TableOptions } from "./table.js";
