import { UsageError } from "../errors.js";

/** How values and names appear inside usage sentences: quoted, on one line, never huge. */
export function quote(value: string, limit = 40): string {
  const escaped = JSON.stringify(value).slice(1, -1).replace(/\\"/g, '"').replace(/'/g, "\\'");
  const shown = escaped.length > limit ? `${escaped.slice(0, limit)}…` : escaped;
  return `'${shown}'`;
}

/** `batchSize` -> `batch-size`: a flag's property name as it is written on the magic line. */
export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Edit distance counting a swap of neighbours as one edit (the commonest typo); bounded for huge inputs. */
export function distance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Math.max(a.length, b.length);
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known word closest to a misspelling, when one is close enough to be a plausible typo. */
export function closest(word: string, known: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = candidate.startsWith(lower) && lower.length >= 2 ? 0.5 : distance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const allowed = lower.length <= 3 ? 1 : lower.length <= 6 ? 2 : 3;
  return best !== undefined && bestDistance <= allowed ? best : undefined;
}

/** One shell-like word of a magic line, with where it sits in the line. */
export interface Word {
  value: string;
  start: number;
  end: number;
  /** Whether any part of it was quoted or escaped (a quoted `--x` is a value, not a flag). */
  quoted: boolean;
}

/**
 * Reads the shell-like word that starts at `start` (POSIX quoting: '...' is literal, "..." honours
 * backslash before \ " $ and `, a backslash outside quotes escapes the next character).
 * `magic` names the magic in the error a person reads when a quote is never closed.
 */
export function readWord(line: string, start: number, magic: string): Word {
  let value = "";
  let quoted = false;
  let i = start;
  while (i < line.length && !/\s/.test(line[i]!)) {
    const c = line[i]!;
    if (c === "'") {
      const close = line.indexOf("'", i + 1);
      if (close < 0) throw new UsageError(`unterminated ' quote in ${magic} at ${quote(line.slice(i), 20)}; close the quote or escape it with a backslash.`);
      value += line.slice(i + 1, close);
      quoted = true;
      i = close + 1;
    } else if (c === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= line.length) throw new UsageError(`unterminated " quote in ${magic} at ${quote(line.slice(i), 20)}; close the quote or escape it with a backslash.`);
        const d = line[j]!;
        if (d === '"') break;
        if (d === "\\" && j + 1 < line.length && '\\"$`'.includes(line[j + 1]!)) {
          value += line[j + 1];
          j += 2;
        } else {
          value += d;
          j += 1;
        }
      }
      quoted = true;
      i = j + 1;
    } else if (c === "\\" && i + 1 < line.length) {
      value += line[i + 1];
      quoted = true;
      i += 2;
    } else {
      value += c;
      i += 1;
    }
  }
  return { value, start, end: i, quoted };
}

/** Index of the first non-space character at or after `from`. */
export function skipSpace(line: string, from: number): number {
  let i = from;
  while (i < line.length && /\s/.test(line[i]!)) i++;
  return i;
}
