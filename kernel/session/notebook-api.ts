import { toDisplayOutput } from "../display/mime.js";
import { figure, type Figure } from "../display/figure.js";
import { table, type Table } from "../display/table.js";
import { NOTEBOOK_API } from "../typescript/prelude.js";
import type { ErrorRecord } from "../errors.js";
import type { CellIO } from "./cell-io.js";

export interface NotebookDisplayHandle {
  readonly id: string;
  update(value: unknown): void;
}

/** The `tunelab` object of the notebook's TypeScript scope (declared for the compiler in the prelude). */
export interface NotebookApi {
  readonly last: unknown;
  /** The last error a cell raised: its name, its sentence, and any folded detail (a Python traceback). */
  readonly lastError: ErrorRecord | undefined;
  readonly results: Record<string, unknown>;
  magic(line: string): Promise<unknown>;
  display(value: unknown, options?: { id?: string }): NotebookDisplayHandle;
  clear(wait?: boolean): void;
  /** A Plotly figure that displays itself (interactive HTML, Plotly JSON and a static SVG). */
  figure(...args: Parameters<typeof figure>): Figure;
  /** A table (arquero table or rows) that displays itself as HTML, markdown and plain text. */
  table(...args: Parameters<typeof table>): Table;
}

export interface NotebookHost {
  /** The CellIO of the cell running now (or of the last one, for late output). */
  currentIO(): CellIO;
  runMagicLine(line: string): Promise<unknown>;
}

const handles = new WeakSet<object>();

/** A handle returned by `display(...)`: showing it again as the cell's result would duplicate the output. */
export function isDisplayHandle(value: unknown): boolean {
  return typeof value === "object" && value !== null && handles.has(value);
}

/** Keeps every magic's result for TypeScript and exposes display to cells. */
export class MagicResults {
  last: unknown = undefined;
  results: Record<string, unknown> = {};
  lastError: ErrorRecord | undefined = undefined;

  record(name: string, value: unknown): void {
    this.last = value;
    this.results[name] = value;
  }

  clear(): void {
    this.last = undefined;
    this.results = {};
    this.lastError = undefined;
  }
}

export function installNotebookApi(host: NotebookHost, results: MagicResults): NotebookApi {
  const api: NotebookApi = {
    get last() {
      return results.last;
    },
    get results() {
      return results.results;
    },
    get lastError() {
      return results.lastError;
    },
    magic: (line: string) => host.runMagicLine(line),
    display(value: unknown, options?: { id?: string }) {
      const io = host.currentIO();
      const shown = io.display(toDisplayOutput(value), options);
      const handle: NotebookDisplayHandle = {
        id: shown.id,
        update: (next: unknown) => shown.update(toDisplayOutput(next)),
      };
      handles.add(handle);
      return handle;
    },
    clear(wait = false) {
      host.currentIO().clearOutput(wait);
    },
    // Also importable as "tunelab/display"; on the notebook object so that a notebook anywhere
    // on disk can use them without a node_modules/tunelab of its own.
    figure,
    table,
  };
  (globalThis as Record<symbol, unknown>)[NOTEBOOK_API] = api;
  return api;
}
