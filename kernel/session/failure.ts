import { inspect } from "node:util";
import { UserFacingError, type ErrorRecord } from "../errors.js";
import { CompileError } from "../typescript/executor.js";

/** What Jupyter shows for a failed cell (iopub `error`, `execute_reply` with status error). */
export interface Failure {
  ename: string;
  evalue: string;
  traceback: string[];
}

const RED = "\u001b[0;31m";
const RESET = "\u001b[0m";
const DIM = "\u001b[2m";

/**
 * A person-facing error is its sentence alone; a compile error lists each diagnostic with its cell
 * line; anything else names the failing line of the cell and keeps the stack frames of user code.
 * `line` is 0-based in `code`.
 */
export function describeFailure(error: unknown, code: string, line?: number): Failure {
  const lines = code.split("\n");
  const source = (n: number) => (lines[n] ?? "").trim();
  if (error instanceof UserFacingError) {
    const folded = error.detail ? [`${DIM}(technical detail folded: %tb shows it, or tunelab.lastError.detail)${RESET}`] : [];
    return { ename: error.ename, evalue: error.message, traceback: [error.message, ...folded] };
  }
  if (error instanceof CompileError) {
    const traceback = error.diagnostics.flatMap((d) => [
      `${RED}CompileError${RESET}: line ${d.line}:${d.column} - ${d.message}`,
      `    ${d.line} | ${source(d.line - 1)}`,
    ]);
    const first = error.diagnostics[0];
    return { ename: "CompileError", evalue: `line ${first.line}:${first.column} - ${first.message}`, traceback };
  }
  if (error instanceof Error) {
    const ename = error.name || error.constructor?.name || "Error";
    const traceback = [`${RED}${ename}${RESET}: ${error.message}`];
    if (line !== undefined) traceback.push(`    at cell line ${line + 1}: ${source(line)}`);
    traceback.push(...userFrames(error));
    return { ename, evalue: error.message, traceback };
  }
  const evalue = typeof error === "string" ? error : inspect(error, { depth: 2 });
  const traceback = [`${RED}Uncaught${RESET} ${evalue}`];
  if (line !== undefined) traceback.push(`    at cell line ${line + 1}: ${source(line)}`);
  return { ename: "Uncaught", evalue, traceback };
}

/** What `%tb` and `tunelab.lastError` keep of a failure: its name, sentence and any folded detail. */
export function errorRecord(error: unknown): ErrorRecord {
  if (error instanceof UserFacingError) return { ename: error.ename, message: error.message, ...(error.detail ? { detail: error.detail } : {}) };
  if (error instanceof Error) return { ename: error.name || "Error", message: error.message, ...(error.stack ? { detail: error.stack } : {}) };
  return { ename: "Uncaught", message: typeof error === "string" ? error : inspect(error, { depth: 2 }) };
}

/** Stack frames from the user's own modules (not the cell's compiled code, Node or the kernel). */
function userFrames(error: Error): string[] {
  return (error.stack ?? "")
    .split("\n")
    .filter((l) => l.startsWith("    at "))
    .filter((l) => !/evalmachine\.<anonymous>|node:internal|node_modules\/tslab|\/dist\/kernel\/|\(node:|<anonymous>\)$/.test(l))
    .slice(0, 8);
}
