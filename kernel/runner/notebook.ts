import { randomUUID } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { UserFacingError } from "../errors.js";

/** nbformat 4 as this runner reads and writes it; multiline strings are kept as one string in memory. */
export type MultilineString = string | string[];

export type Output =
  | { output_type: "stream"; name: "stdout" | "stderr"; text: MultilineString }
  | { output_type: "display_data"; data: Record<string, unknown>; metadata: Record<string, unknown> }
  | { output_type: "execute_result"; data: Record<string, unknown>; metadata: Record<string, unknown>; execution_count: number | null }
  | { output_type: "error"; ename: string; evalue: string; traceback: string[] };

interface CellBase {
  id?: string;
  source: MultilineString;
  metadata: Record<string, unknown> & { tags?: string[] };
}

export interface CodeCell extends CellBase {
  cell_type: "code";
  execution_count: number | null;
  outputs: Output[];
}

export interface MarkdownCell extends CellBase {
  cell_type: "markdown";
  attachments?: Record<string, Record<string, string>>;
}

export interface RawCell extends CellBase {
  cell_type: "raw";
}

export type Cell = CodeCell | MarkdownCell | RawCell;

export interface Notebook {
  cells: Cell[];
  metadata: Record<string, unknown> & {
    kernelspec?: { name: string; display_name?: string; language?: string };
    language_info?: Record<string, unknown>;
  };
  nbformat: number;
  nbformat_minor: number;
}

export function text(value: MultilineString | undefined): string {
  return Array.isArray(value) ? value.join("") : (value ?? "");
}

export function tagsOf(cell: Cell): string[] {
  return Array.isArray(cell.metadata?.tags) ? cell.metadata.tags : [];
}

export function readNotebook(path: string): Notebook {
  let raw: string;
  try {
    raw = readFileSync(path, "utf8");
  } catch (error) {
    throw new UserFacingError(`Cannot read the notebook ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); check the path.`);
  }
  let notebook: Notebook;
  try {
    notebook = JSON.parse(raw) as Notebook;
  } catch (error) {
    throw new UserFacingError(`${path} is not valid JSON (${(error as Error).message}); is it really an .ipynb notebook?`);
  }
  if (notebook.nbformat !== 4 || !Array.isArray(notebook.cells)) {
    throw new UserFacingError(`${path} is not an nbformat 4 notebook; convert it with \`jupyter nbconvert --to notebook\` first.`);
  }
  for (const cell of notebook.cells) {
    // nbformat 4.5 made cell ids required; nbformat.normalize() adds them the same way.
    if (notebook.nbformat_minor >= 5 && typeof cell.id !== "string") cell.id = newCellId();
    cell.source = text(cell.source);
    cell.metadata ??= {};
    if (cell.cell_type === "code") cell.outputs ??= [];
  }
  return notebook;
}

/** A fresh cell id in nbformat 4.5's alphabet. */
export function newCellId(): string {
  return randomUUID().replaceAll("-", "").slice(0, 8);
}

/** nbformat's own habit: multiline strings on disk as lists of lines, so that diffs stay readable. */
function splitLines(value: MultilineString): string[] {
  const joined = text(value);
  return joined === "" ? [] : (joined.match(/[^\n]*\n|[^\n]+$/g) ?? []);
}

function isJsonMime(mime: string): boolean {
  return mime === "application/json" || /^application\/(.+\+)?json$/.test(mime);
}

function forDisk(notebook: Notebook): unknown {
  return {
    ...notebook,
    cells: notebook.cells.map((cell) => {
      const out: Record<string, unknown> = { ...cell, source: splitLines(cell.source) };
      if (cell.cell_type === "code") {
        out.outputs = cell.outputs.map((o) => {
          if (o.output_type === "stream") return { ...o, text: splitLines(o.text) };
          if (o.output_type === "error") return o;
          const data: Record<string, unknown> = {};
          for (const [mime, value] of Object.entries(o.data)) {
            data[mime] = typeof value === "string" && !isJsonMime(mime) && !mime.startsWith("image/png") && !mime.startsWith("image/jpeg") ? splitLines(value) : value;
          }
          return { ...o, data };
        });
      }
      return out;
    }),
  };
}

/** Same layout as nbformat.write (indent 1, sorted keys), so that the file diffs cleanly against Jupyter's. */
function sortedJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        : v,
    1,
  );
}

export function writeNotebook(path: string, notebook: Notebook): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, sortedJson(forDisk(notebook)) + "\n");
  renameSync(tmp, path);
}
