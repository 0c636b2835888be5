import { readFileSync } from "node:fs";
import { UsageError } from "../errors.js";
import { newCellId, tagsOf, type Cell, type Notebook } from "./notebook.js";

export type ParamValue = string | number | boolean | null | ParamValue[] | { [key: string]: ParamValue };
export type Parameters = Record<string, ParamValue>;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** papermill's tag names, so that notebooks carry over unchanged. */
export const PARAMETERS_TAG = "parameters";
export const INJECTED_TAG = "injected-parameters";

function splitAssignment(flag: string, assignment: string): [string, string] {
  const at = assignment.indexOf("=");
  const name = at > 0 ? assignment.slice(0, at).trim() : "";
  if (!IDENTIFIER.test(name)) {
    throw new UsageError(`${flag} expects name=value with name a valid identifier, got '${assignment}'.`);
  }
  return [name, assignment.slice(at + 1)];
}

/**
 * `-p iters=40` is a number, `-p fast=true` a boolean, `-p cfg='{"a":1}'` JSON; anything that does
 * not parse as JSON stays a string, so `-p model=smollm2` needs no quotes. `-r` keeps the raw string.
 */
export function parseValue(raw: string): ParamValue {
  const trimmed = raw.trim();
  if (trimmed === "") return "";
  try {
    return JSON.parse(trimmed) as ParamValue;
  } catch {
    return raw;
  }
}

export function parseAssignment(flag: "-p" | "-r", assignment: string): [string, ParamValue] {
  const [name, value] = splitAssignment(flag, assignment);
  return [name, flag === "-r" ? value : parseValue(value)];
}

export function readParameterFile(path: string): Parameters {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new UsageError(`-f ${path}: cannot read a JSON object of parameters (${(error as Error).message}).`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`-f ${path} must hold a JSON object such as {"iters": 40}.`);
  }
  for (const name of Object.keys(parsed)) {
    if (!IDENTIFIER.test(name)) throw new UsageError(`-f ${path}: '${name}' is not a valid parameter name.`);
  }
  return parsed as Parameters;
}

function pythonLiteral(value: ParamValue): string {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(pythonLiteral).join(", ")}]`;
  if (typeof value === "object") return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pythonLiteral(v)}`).join(", ")}}`;
  if (typeof value === "number" && !Number.isFinite(value)) return `float("${value > 0 ? "inf" : value < 0 ? "-inf" : "nan"}")`;
  return JSON.stringify(value);
}

/** The injected cell's code in the kernel's language: typed constants for TypeScript, assignments for Python. */
export function parameterSource(parameters: Parameters, language: string): string {
  const entries = Object.entries(parameters);
  if (/^python/i.test(language)) {
    return ["# Parameters", ...entries.map(([name, value]) => `${name} = ${pythonLiteral(value)}`)].join("\n") + "\n";
  }
  return ["// Parameters", ...entries.map(([name, value]) => `const ${name} = ${JSON.stringify(value)};`)].join("\n") + "\n";
}

/**
 * papermill's convention: the new cell goes right after the cell tagged `parameters` (so it
 * overrides its defaults), replacing an earlier injected cell; without a tagged cell it goes first.
 * Returns whether a `parameters` cell was found.
 */
export function injectParameters(notebook: Notebook, parameters: Parameters, language: string): boolean {
  const cells = notebook.cells.filter((c) => !tagsOf(c).includes(INJECTED_TAG));
  const anchor = cells.findIndex((c) => tagsOf(c).includes(PARAMETERS_TAG));
  const cell: Cell = {
    cell_type: "code",
    execution_count: null,
    metadata: { tags: [INJECTED_TAG] },
    outputs: [],
    source: parameterSource(parameters, language),
  };
  if (notebook.nbformat_minor >= 5) cell.id = newCellId();
  cells.splice(anchor + 1, 0, cell);
  notebook.cells = cells;
  return anchor >= 0;
}
