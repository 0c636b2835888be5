import type { Flag, FlagMap, MagicSpec } from "./schema.js";
import { kebab } from "./words.js";

export interface Completion {
  matches: string[];
  cursorStart: number;
  cursorEnd: number;
}

/** The line holding `cursor`, with where it starts in the cell. */
export function lineAt(code: string, cursor: number): { line: string; start: number } {
  const at = Math.max(0, Math.min(cursor, code.length));
  const start = code.lastIndexOf("\n", at - 1) + 1;
  const newline = code.indexOf("\n", at);
  return { line: code.slice(start, newline < 0 ? code.length : newline).replace(/\r$/, ""), start };
}

/** The magic line under the cursor, when the cursor is on one (line magics anywhere, a cell magic's header). */
export function magicLineAt(code: string, cursor: number): { line: string; start: number; indent: number } | null {
  const { line, start } = lineAt(code, cursor);
  const indent = line.length - line.trimStart().length;
  if (!/^%%?([\p{L}_]|$)/u.test(line.slice(indent))) return null;
  // Inside a `%%` cell every later line is body, not a magic line.
  const before = code.slice(0, start);
  const firstLine = before.split(/\r?\n/).find((l) => l.trim() !== "");
  if (firstLine !== undefined && /^%%[\p{L}_]/u.test(firstLine.trimStart())) return null;
  return { line, start, indent };
}

interface Word {
  text: string;
  start: number;
}

function words(text: string): Word[] {
  const out: Word[] = [];
  const re = /\S+/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push({ text: m[0], start: m.index });
  return out;
}

function takesValue(flag: Flag<unknown> | undefined): boolean {
  return flag !== undefined && flag.kind !== "boolean";
}

/**
 * Completes magic names after `%`/`%%`, flag names after `-`/`--`, and a flag's choices after it.
 * Returns null when the cursor is not on a magic line, so the caller can complete TypeScript.
 */
export function completeMagic(specs: readonly MagicSpec<FlagMap>[], code: string, cursor: number): Completion | null {
  const found = magicLineAt(code, cursor);
  if (!found) return null;
  const { line, start, indent } = found;
  const col = Math.max(indent, Math.min(cursor - start, line.length));
  const typed = line.slice(indent, col);
  const nameMatch = /^%%?[\w.-]*/.exec(line.slice(indent))!;

  if (/^%%?[\w.-]*$/.test(typed)) {
    const cellOnly = typed.startsWith("%%");
    const candidates = specs.flatMap((s) => [
      ...(s.forms.line && !cellOnly ? [`%${s.name}`] : []),
      ...(s.forms.cell ? [`%%${s.name}`] : []),
    ]);
    return {
      matches: candidates.filter((c) => c.startsWith(typed)).sort(),
      cursorStart: start + indent,
      cursorEnd: start + indent + nameMatch[0].length,
    };
  }

  const name = nameMatch[0].replace(/^%%?/, "");
  const spec = specs.find((s) => s.name === name);
  const none: Completion = { matches: [], cursorStart: cursor, cursorEnd: cursor };
  if (!spec) return none;

  const flagsByKebab = new Map(Object.entries(spec.flags).map(([k, f]) => [kebab(k), f] as const));
  const restStart = indent + nameMatch[0].length;
  const before = words(line.slice(restStart, col)).map((w) => ({ text: w.text, start: w.start + restStart }));
  const endsInSpace = col === restStart || /\s/.test(line[col - 1] ?? " ");
  const current = endsInSpace ? { text: "", start: col } : before.pop()!;
  const currentEnd = (() => {
    let i = col;
    while (i < line.length && !/\s/.test(line[i]!)) i++;
    return start + i;
  })();

  // Walk what precedes the current word: once free text starts, nothing is completed.
  const used = new Set<string>();
  let pendingValueFor: Flag<unknown> | undefined;
  for (const w of before) {
    if (pendingValueFor) {
      pendingValueFor = undefined;
      continue;
    }
    if (w.text === "--" || !w.text.startsWith("--")) return none;
    const [flagName, value] = w.text.slice(2).split("=", 2) as [string, string | undefined];
    used.add(flagName);
    if (value === undefined && takesValue(flagsByKebab.get(flagName))) pendingValueFor = flagsByKebab.get(flagName);
  }

  const at = (matches: string[]): Completion => ({ matches, cursorStart: start + current.start, cursorEnd: currentEnd });

  if (pendingValueFor) {
    const choices = pendingValueFor.kind === "string" ? pendingValueFor.choices ?? [] : [];
    return at(choices.filter((c) => c.startsWith(current.text)));
  }
  if (current.text.startsWith("--") && current.text.includes("=")) {
    const [flagName] = current.text.slice(2).split("=", 1) as [string];
    const f = flagsByKebab.get(flagName);
    const choices = f?.kind === "string" ? f.choices ?? [] : [];
    return at(choices.map((c) => `--${flagName}=${c}`).filter((c) => c.startsWith(current.text)));
  }
  if (current.text === "" || current.text.startsWith("-")) {
    const names = [...flagsByKebab.entries()].filter(([k, f]) => f.kind === "repeated" || !used.has(k)).map(([k]) => `--${k}`);
    return at(names.filter((n) => n.startsWith(current.text)).sort());
  }
  return none;
}
