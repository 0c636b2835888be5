/**
 * Declarations every notebook starts with, compiled as its first (invisible) cell: they give the
 * TypeScript scope typed access to the kernel (`display`, `tunelab.magic`, `tunelab.results`).
 * Magic results are typed `any` on purpose: a notebook reads `tunelab.last.adapterPath` directly.
 */
export const NOTEBOOK_API = Symbol.for("tunelab.notebook");

export const PRELUDE = `
interface TunelabDisplayHandle {
  readonly id: string;
  update(value: unknown): void;
}
const tunelab: {
  /** The result of the last magic that ran (like IPython's \`x = %magic\`). */
  readonly last: any;
  /** Every magic's latest result, by magic name. */
  readonly results: Record<string, any>;
  /** The last error a cell raised: name, sentence, and any folded detail (a Python traceback; %tb shows it). */
  readonly lastError: { ename: string; message: string; detail?: string } | undefined;
  /** Runs a magic line (\`await tunelab.magic("%generate Hi")\`); its outputs land in this cell. */
  magic(line: string): Promise<any>;
  /** Shows a value as its own output (rich when it has a Symbol.for("Jupyter.display") method). */
  display(value: unknown, options?: { id?: string }): TunelabDisplayHandle;
  /** Clears this cell's output; with wait, when the next output arrives. */
  clear(wait?: boolean): void;
  /** A Plotly figure ({data, layout}) that displays itself: interactive HTML, Plotly JSON, static SVG. */
  figure(spec: { data: any[]; layout?: any; config?: any }, options?: any): any;
  /** A table from an arquero table or an array of row objects; displays as HTML, markdown and text. */
  table(input: any, options?: any): any;
} = (globalThis as any)[Symbol.for("tunelab.notebook")];
const display = tunelab.display;
`;
