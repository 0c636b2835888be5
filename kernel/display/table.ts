import { DISPLAY, type DisplayOutput, type Displayable } from "./mime.js";
import { escapeHtml, escapeMarkdownCell, formatValue } from "./format.js";

/** The part of an arquero table we read (so any table with these methods works). */
export interface ColumnTable {
  columnNames(): string[];
  numRows(): number;
  objects(options?: { limit?: number }): Record<string, unknown>[];
}

export type TableInput = ColumnTable | readonly Record<string, unknown>[];

export interface TableOptions {
  /** Which columns, in which order (default: all, in order of first appearance). */
  columns?: readonly string[];
  caption?: string;
  /** Rows shown before the rest is summarised as "… N more rows" (default 100). */
  maxRows?: number;
  /** Per-column text for a value, overriding the default number formatting. */
  format?: Readonly<Record<string, (value: unknown) => string>>;
}

function isColumnTable(input: TableInput): input is ColumnTable {
  const t = input as Partial<ColumnTable>;
  return typeof t.columnNames === "function" && typeof t.objects === "function" && typeof t.numRows === "function";
}

/** Rows shown as a clean table: HTML for notebooks, markdown for documents, plain text for logs. */
export class Table implements Displayable {
  readonly columns: string[];
  readonly rows: Record<string, unknown>[];
  /** Rows in the input, including those beyond maxRows. */
  readonly totalRows: number;
  private readonly numeric: boolean[];

  constructor(input: TableInput, private readonly options: TableOptions = {}) {
    const maxRows = options.maxRows ?? 100;
    if (isColumnTable(input)) {
      this.totalRows = input.numRows();
      this.rows = input.objects({ limit: maxRows });
      this.columns = options.columns ? [...options.columns] : input.columnNames();
    } else {
      this.totalRows = input.length;
      this.rows = input.slice(0, maxRows).map((r) => ({ ...r }));
      const seen = new Set<string>();
      for (const row of input) for (const key of Object.keys(row)) seen.add(key);
      this.columns = options.columns ? [...options.columns] : [...seen];
    }
    this.numeric = this.columns.map((c) => {
      const values = this.rows.map((r) => r[c]).filter((v) => v !== null && v !== undefined);
      return values.length > 0 && values.every((v) => typeof v === "number" || typeof v === "bigint");
    });
  }

  private cell(column: string, value: unknown): string {
    const custom = this.options.format?.[column];
    return custom ? custom(value) : formatValue(value);
  }

  private get more(): number {
    return this.totalRows - this.rows.length;
  }

  private moreLine(): string {
    return `… ${this.more} more row${this.more === 1 ? "" : "s"}`;
  }

  toHTML(): string {
    const align = (i: number) => (this.numeric[i] ? "right" : "left");
    const head = this.columns.map((c, i) => `<th style="text-align:${align(i)};padding:2px 10px">${escapeHtml(c)}</th>`).join("");
    const body = this.rows
      .map((row) => `<tr>${this.columns.map((c, i) => `<td style="text-align:${align(i)};padding:2px 10px">${escapeHtml(this.cell(c, row[c]))}</td>`).join("")}</tr>`)
      .join("\n");
    const caption = this.options.caption ? `<caption style="text-align:left;font-weight:600;padding:4px 0">${escapeHtml(this.options.caption)}</caption>` : "";
    const foot = this.more > 0 ? `\n<tfoot><tr><td colspan="${this.columns.length}" style="text-align:left;opacity:0.7">${escapeHtml(this.moreLine())}</td></tr></tfoot>` : "";
    return `<table class="tunelab-table" style="border-collapse:collapse;font-variant-numeric:tabular-nums">${caption}\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>${foot}\n</table>`;
  }

  toMarkdown(): string {
    const lines: string[] = [];
    if (this.options.caption) lines.push(`**${escapeMarkdownCell(this.options.caption)}**`, "");
    lines.push(`| ${this.columns.map(escapeMarkdownCell).join(" | ")} |`);
    lines.push(`|${this.numeric.map((n) => (n ? "---:" : ":---")).join("|")}|`);
    for (const row of this.rows) lines.push(`| ${this.columns.map((c) => escapeMarkdownCell(this.cell(c, row[c]))).join(" | ")} |`);
    if (this.more > 0) lines.push("", this.moreLine());
    return lines.join("\n");
  }

  toPlain(): string {
    const cells = this.rows.map((row) => this.columns.map((c) => this.cell(c, row[c]).replace(/\r?\n/g, " ")));
    const widths = this.columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
    const pad = (s: string, i: number) => (this.numeric[i] ? s.padStart(widths[i]!) : s.padEnd(widths[i]!));
    const lines = [this.columns.map(pad).join("  ").trimEnd(), widths.map((w) => "-".repeat(w)).join("  ")];
    for (const r of cells) lines.push(r.map(pad).join("  ").trimEnd());
    if (this.options.caption) lines.unshift(this.options.caption);
    if (this.more > 0) lines.push(this.moreLine());
    return lines.join("\n");
  }

  [DISPLAY](): DisplayOutput {
    return { data: { "text/html": this.toHTML(), "text/markdown": this.toMarkdown(), "text/plain": this.toPlain() }, metadata: {} };
  }
}

export function table(input: TableInput, options: TableOptions = {}): Table {
  return new Table(input, options);
}
