import type { DisplayOutput } from "../display/mime.js";
import { escapeMarkdownCell } from "../display/format.js";
import type { Flag, FlagMap, MagicSpec } from "./schema.js";
import { expected } from "./parse.js";
import { kebab } from "./words.js";

/** The placeholder a flag's value gets in help: its declared metavar, else one made from its kind. */
export function metavar(flag: Flag<unknown>): string {
  if (flag.metavar) return flag.metavar;
  switch (flag.kind) {
    case "boolean":
      return "";
    case "int":
      return "N";
    case "number":
      return "X";
    case "string":
      return flag.choices ? `{${flag.choices.join(",")}}` : "VALUE";
    case "list":
      return flag.of === "string" ? "A,B,..." : "N,N,...";
    case "repeated":
      return "TEXT";
  }
}

function flagToken(name: string, flag: Flag<unknown>): string {
  const mv = metavar(flag);
  return `--${kebab(name)}${mv ? ` ${mv}` : ""}`;
}

function defaultText(flag: Flag<unknown>): string | undefined {
  if (flag.kind === "boolean" || flag.kind === "repeated" || flag.default === undefined) return undefined;
  return Array.isArray(flag.default) ? flag.default.join(",") : String(flag.default);
}

/** Usage lines, one per form: `%tune [--iters N] [DATA]` and `%%tune [flags]` + body. */
export function usageLines(spec: MagicSpec<FlagMap>): string[] {
  const entries = Object.entries(spec.flags);
  const flagPart =
    entries.length === 0
      ? ""
      : entries.length <= 5
        ? ` ${entries.map(([n, f]) => `[${flagToken(n, f)}]${f.kind === "repeated" ? "..." : ""}`).join(" ")}`
        : " [flags]";
  const textPart = spec.text ? (spec.text.required ? ` ${spec.text.name}` : ` [${spec.text.name}]`) : "";
  const lines: string[] = [];
  if (spec.forms.line) lines.push(`%${spec.name}${flagPart}${textPart}`);
  if (spec.forms.cell) lines.push(`%%${spec.name}${flagPart}${textPart}${spec.body ? "\n<body>" : ""}`);
  return lines;
}

interface FlagRow {
  token: string;
  help: string;
  detail: string;
}

function flagRows(spec: MagicSpec<FlagMap>): FlagRow[] {
  return Object.entries(spec.flags).map(([name, flag]) => {
    const parts: string[] = [];
    const def = defaultText(flag);
    if (def !== undefined) parts.push(`default: ${def}`);
    if (flag.kind !== "boolean" && flag.kind !== "repeated" && !(flag.kind === "string" && !flag.choices)) parts.push(expected(flag));
    if (flag.kind === "repeated") parts.push("may be given several times");
    return { token: flagToken(name, flag), help: flag.help, detail: parts.join("; ") };
  });
}

/** `%name?`: the magic's help, derived from its declaration alone. */
export function helpText(spec: MagicSpec<FlagMap>): string {
  const out: string[] = [`%${spec.forms.line ? "" : "%"}${spec.name}: ${spec.summary}`, ""];
  out.push("Usage:", ...usageLines(spec).flatMap((l) => l.split("\n").map((x) => `  ${x}`)));
  if (spec.description) out.push("", spec.description);
  if (spec.text) out.push("", `${spec.text.name}: ${spec.text.help}`);
  if (spec.body) out.push("", `Cell body: ${spec.body.help}`);
  const rows = flagRows(spec);
  if (rows.length) {
    const width = Math.min(32, Math.max(...rows.map((r) => r.token.length)));
    out.push("", "Flags:");
    for (const r of rows) {
      const pad = r.token.length > width ? `\n  ${" ".repeat(width)}  ` : " ".repeat(width - r.token.length + 2);
      out.push(`  ${r.token}${pad}${r.help}${r.detail ? ` (${r.detail})` : ""}`);
    }
  }
  if (spec.examples?.length) out.push("", "Examples:", ...spec.examples.flatMap((e) => e.split("\n").map((l) => `  ${l}`)));
  return out.join("\n");
}

export function helpMarkdown(spec: MagicSpec<FlagMap>): string {
  const out: string[] = [`**\`%${spec.forms.line ? "" : "%"}${spec.name}\`** — ${spec.summary}`, "", "```", ...usageLines(spec), "```"];
  if (spec.description) out.push("", spec.description);
  if (spec.text) out.push("", `**${spec.text.name}**: ${spec.text.help}`);
  if (spec.body) out.push("", `**Cell body**: ${spec.body.help}`);
  const rows = flagRows(spec);
  if (rows.length) {
    out.push("", "| flag | help | details |", "|---|---|---|");
    for (const r of rows) out.push(`| \`${r.token}\` | ${escapeMarkdownCell(r.help)} | ${escapeMarkdownCell(r.detail)} |`);
  }
  if (spec.examples?.length) out.push("", "**Examples**", "", "```", ...spec.examples, "```");
  return out.join("\n");
}

export function helpOutput(spec: MagicSpec<FlagMap>): DisplayOutput {
  return { data: { "text/plain": helpText(spec), "text/markdown": helpMarkdown(spec) }, metadata: {} };
}
