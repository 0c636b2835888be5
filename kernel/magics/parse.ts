import { UsageError } from "../errors.js";
import type { CellSegment, Flag, FlagMap, MagicSpec } from "./schema.js";
import { closest, kebab, quote, readWord, skipSpace } from "./words.js";

// A letter after `%` marks a magic; `% 2` or `%2` on a continuation line stays TypeScript's modulo.
const MAGIC_LINE = /^%%?[\p{L}_]/u;

/**
 * Splits a cell: a first non-blank line `%%name` makes the whole cell one cell magic; otherwise
 * each line starting with `%name` is a line magic and runs of other lines are code. `startLine`
 * is the zero-based line of the cell where the segment begins, so errors map back to the cell.
 */
export function parseCell(code: string): CellSegment[] {
  const lines = code.split(/\r?\n/);
  const first = lines.findIndex((line) => line.trim() !== "");
  if (first >= 0 && /^%%[\p{L}_]/u.test(lines[first]!.trimStart())) {
    return [{ kind: "cell-magic", header: lines[first]!.trim(), body: lines.slice(first + 1).join("\n"), startLine: first }];
  }
  const segments: CellSegment[] = [];
  let pending: string[] = [];
  let pendingStart = 0;
  const flushCode = () => {
    if (pending.some((line) => line.trim() !== "")) segments.push({ kind: "code", code: pending.join("\n"), startLine: pendingStart });
    pending = [];
  };
  lines.forEach((line, index) => {
    if (MAGIC_LINE.test(line.trimStart())) {
      flushCode();
      segments.push({ kind: "line-magic", line: line.trim(), startLine: index });
    } else {
      if (pending.length === 0) pendingStart = index;
      pending.push(line);
    }
  });
  flushCode();
  return segments;
}

/** The magic line's head: which magic, in which form, whether help was asked, and the rest. */
export interface MagicHead {
  name: string;
  form: "line" | "cell";
  help: boolean;
  /** Everything after the name (flags and free text), unparsed. */
  rest: string;
  /** Where `rest` starts in the line, for completion. */
  restStart: number;
}

export function parseHead(line: string): MagicHead {
  const match = /^(%%?)([\p{L}_][\p{L}\p{N}_.-]*)(\?{0,2})/u.exec(line);
  if (!match) throw new UsageError(`${quote(line)} is not a magic line; a magic line starts with %name or %%name.`);
  const [head, percent, name, question] = match as unknown as [string, string, string, string];
  const next = line[head.length];
  if (next !== undefined && !/\s/.test(next)) {
    throw new UsageError(`${quote(line, 30)} is not a magic line; put a space between %${name} and its arguments.`);
  }
  return { name, form: percent === "%%" ? "cell" : "line", help: question !== "", rest: line.slice(head.length), restStart: head.length };
}

/** How a value of this flag is described in errors and help ("a positive integer"). */
export function expected(flag: Flag<unknown>): string {
  switch (flag.kind) {
    case "boolean":
      return "true or false";
    case "repeated":
      return "a value";
    case "string":
      return flag.choices ? `one of ${flag.choices.join(", ")}` : "a value";
    case "int":
    case "number":
      return describeNumber(flag.kind, flag.min, flag.max, flag.kind === "number" && flag.exclusiveMin === true, false);
    case "list": {
      const each = flag.of === "string" ? "values" : describeNumber(flag.of, flag.min, flag.max, false, true);
      const limit = flag.maxItems !== undefined ? ` (at most ${flag.maxItems})` : "";
      return `a comma-separated list of ${each}${limit}`;
    }
  }
}

function describeNumber(kind: "int" | "number", min: number | undefined, max: number | undefined, exclusiveMin: boolean, plural: boolean): string {
  const noun = kind === "int" ? (plural ? "integers" : "integer") : plural ? "numbers" : "number";
  const article = plural ? "" : kind === "int" ? "an " : "a ";
  if (min !== undefined && max !== undefined) {
    return exclusiveMin ? `${article}${noun} greater than ${min} and at most ${max}` : `${article}${noun} between ${min} and ${max}`;
  }
  if (min !== undefined) {
    if (min === 0) return `${plural ? "" : "a "}${exclusiveMin ? "positive" : "non-negative"} ${noun}`;
    if (min === 1 && kind === "int") return `${plural ? "" : "a "}positive ${noun}`;
    return exclusiveMin ? `${article}${noun} greater than ${min}` : `${article}${noun} of at least ${min}`;
  }
  if (max !== undefined) return `${article}${noun} of at most ${max}`;
  return `${article}${noun}`;
}

const INT = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function inRange(n: number, min: number | undefined, max: number | undefined, exclusiveMin: boolean): boolean {
  if (min !== undefined && (exclusiveMin ? n <= min : n < min)) return false;
  return max === undefined || n <= max;
}

function toNumber(kind: "int" | "number", raw: string): number | undefined {
  const text = raw.trim();
  if (kind === "int") {
    if (!INT.test(text)) return undefined;
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  if (!DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

const TRUE = new Set(["true", "yes", "1", "on"]);
const FALSE = new Set(["false", "no", "0", "off"]);

/** Converts one flag value from the magic line, or throws the sentence a person reads. */
export function convert(flagName: string, flag: Flag<unknown>, raw: string): unknown {
  const bad = () => new UsageError(`--${flagName} must be ${expected(flag)}, got ${quote(raw)}.`);
  switch (flag.kind) {
    case "boolean": {
      const lower = raw.trim().toLowerCase();
      if (TRUE.has(lower)) return true;
      if (FALSE.has(lower)) return false;
      throw bad();
    }
    case "repeated":
      return raw;
    case "string": {
      if (flag.choices && !flag.choices.includes(raw)) {
        const near = closest(raw, flag.choices);
        throw new UsageError(`--${flagName} must be one of ${flag.choices.join(", ")}, got ${quote(raw)}${near ? `; did you mean ${near}?` : "."}`);
      }
      return raw;
    }
    case "int":
    case "number": {
      const n = toNumber(flag.kind, raw);
      if (n === undefined || !inRange(n, flag.min, flag.max, flag.kind === "number" && flag.exclusiveMin === true)) throw bad();
      return n;
    }
    case "list": {
      const items = raw.split(",").map((item) => item.trim());
      if (items.some((item) => item === "")) throw bad();
      if (flag.maxItems !== undefined && items.length > flag.maxItems) throw bad();
      if (flag.of === "string") return items;
      return items.map((item) => {
        const n = toNumber(flag.of as "int" | "number", item);
        if (n === undefined || !inRange(n, flag.min, flag.max, false)) throw bad();
        return n;
      });
    }
  }
}

export interface ParsedArgs {
  args: Record<string, unknown>;
  text: string;
  /** The line asked for help (`--help`) rather than a run. */
  help?: boolean;
}

/**
 * Reads a magic's flags and free text against its declaration. Flags come first (`--kebab value`,
 * `--kebab=value`, bare `--flag` for booleans); `--` or the first word that is not a flag ends
 * them, and the raw remainder of the line is the free text, kept verbatim.
 */
export function parseArgs(spec: MagicSpec<FlagMap>, rest: string, options: { label?: string; bodyGiven?: boolean } = {}): ParsedArgs {
  const label = options.label ?? `%${spec.name}`;
  const byKebab = new Map<string, [string, Flag<unknown>]>();
  for (const [key, flag] of Object.entries(spec.flags)) byKebab.set(kebab(key), [key, flag]);
  const args: Record<string, unknown> = {};
  const seen = new Set<string>();
  let text = "";
  let afterDashes = false;
  let i = skipSpace(rest, 0);
  while (i < rest.length) {
    if (!rest.startsWith("--", i)) {
      text = rest.slice(i).trimEnd();
      break;
    }
    const word = readWord(rest, i, label);
    i = skipSpace(rest, word.end);
    if (word.value === "--" && !word.quoted) {
      text = rest.slice(i).trimEnd();
      afterDashes = true;
      break;
    }
    const body = word.value.slice(2);
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const entry = byKebab.get(name);
    if (!entry) {
      // argparse habit: a bare --help in flag position shows the help instead of running.
      if (name === "help" && eq < 0) return { args: {}, text: "", help: true };
      const near = closest(name, [...byKebab.keys()]);
      const flagWord = quote(`--${name}`).slice(1, -1);
      throw new UsageError(
        near ? `unknown flag ${flagWord} for ${label}; did you mean --${near}?` : byKebab.size === 0 ? `${label} takes no flags, got ${flagWord}.` : `unknown flag ${flagWord} for ${label}; see ${label}? for its flags.`,
      );
    }
    const [key, flag] = entry;
    if (seen.has(key) && flag.kind !== "repeated") throw new UsageError(`--${name} was given more than once for ${label}; give it once.`);
    seen.add(key);
    let raw: string;
    if (eq >= 0) {
      raw = body.slice(eq + 1);
    } else if (flag.kind === "boolean") {
      args[key] = true;
      continue;
    } else {
      if (i >= rest.length) throw new UsageError(`--${name} needs a value: ${expected(flag)}.`);
      if (rest.startsWith("--", i)) {
        const next = readWord(rest, i, label);
        if (!next.quoted) throw new UsageError(`--${name} needs a value (${expected(flag)}) before ${quote(next.value, 20)}.`);
      }
      const value = readWord(rest, i, label);
      i = skipSpace(rest, value.end);
      raw = value.value;
    }
    const converted = convert(name, flag, raw);
    args[key] = flag.kind === "repeated" ? [...((args[key] as string[] | undefined) ?? []), converted as string] : converted;
  }
  for (const [key, flag] of Object.entries(spec.flags)) {
    if (!(key in args) && flag.default !== undefined) args[key] = Array.isArray(flag.default) ? [...flag.default] : flag.default;
  }
  checkText(spec, text, label, [...byKebab.keys()], options.bodyGiven === true, afterDashes);
  return { args, text };
}

function checkText(spec: MagicSpec<FlagMap>, text: string, label: string, flags: string[], bodyGiven: boolean, afterDashes: boolean): void {
  const single = afterDashes ? null : /^-([a-z][\w-]*)(?=$|[\s=])/.exec(text);
  if (spec.text && single && flags.includes(single[1]!)) {
    throw new UsageError(`${label} got ${quote(`-${single[1]}`)} where a flag needs two dashes; write --${single[1]}, or put -- before text that starts with a dash.`);
  }
  if (spec.text) {
    // A cell magic that declares a body may carry its required text there instead.
    if (spec.text.required && text === "" && !(bodyGiven && spec.body)) throw new UsageError(`${label} needs ${spec.text.name}: ${label} ${flags.length ? "[flags] " : ""}${spec.text.name}.`);
    return;
  }
  if (text === "") return;
  const dashed = /^-([A-Za-z][\w-]*)/.exec(text);
  const near = dashed ? closest(dashed[1]!, flags) : undefined;
  throw new UsageError(`${label} takes no free text, got ${quote(text)}${near ? `; did you mean --${near}?` : flags.length ? "; flags start with --." : "."}`);
}
