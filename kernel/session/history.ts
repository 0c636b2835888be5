/** The inputs (and text outputs) of this kernel's cells, for `history_request`. */
export interface HistoryEntry {
  line: number;
  input: string;
  output: string | null;
}

export type HistoryItem = [number, number, string | [string, string | null]];

export interface HistoryQuery {
  hist_access_type?: string;
  output?: boolean;
  session?: number;
  start?: number;
  stop?: number;
  n?: number;
  pattern?: string;
  unique?: boolean;
}

/** History lives for one kernel process; it is session 1 (0 and negative numbers mean "this one"). */
export const SESSION_NUMBER = 1;

export class History {
  private readonly entries: HistoryEntry[] = [];

  add(line: number, input: string): HistoryEntry {
    const entry = { line, input, output: null };
    this.entries.push(entry);
    return entry;
  }

  query(q: HistoryQuery): HistoryItem[] {
    let found: HistoryEntry[];
    switch (q.hist_access_type) {
      case "tail":
        found = this.entries.slice(-Math.max(0, q.n ?? 10));
        break;
      case "range": {
        const session = q.session ?? 0;
        if (session > 0 && session !== SESSION_NUMBER) return [];
        const start = q.start ?? 0;
        const stop = q.stop ?? Number.POSITIVE_INFINITY;
        found = this.entries.filter((e) => e.line >= start && e.line < stop);
        break;
      }
      case "search": {
        const pattern = globToRegExp(q.pattern ?? "*");
        found = this.entries.filter((e) => pattern.test(e.input));
        if (q.unique) {
          const seen = new Set<string>();
          found = found.reverse().filter((e) => !seen.has(e.input) && seen.add(e.input)).reverse();
        }
        if (q.n) found = found.slice(-q.n);
        break;
      }
      default:
        return [];
    }
    return found.map((e) => [SESSION_NUMBER, e.line, q.output ? [e.input, e.output] : e.input]);
  }
}

/** IPython's search patterns are globs (`*`, `?`) over the whole input. */
function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[\\s\\S]*").replace(/\?/g, "[\\s\\S]");
  return new RegExp(`^${body}$`);
}
