import { createRequire } from "node:module";
import type { Converter, CompletionInfo, ConvertResult } from "tslab/dist/converter.js";
import type { ConverterSet, Executor } from "tslab/dist/executor.js";
import { InterruptedError } from "../errors.js";
import { cellFrameLine, mapJsLine } from "./line-map.js";
import { PRELUDE } from "./prelude.js";

/** A compile error in a cell, with positions in the cell's own lines (1-based). */
export interface CompileDiagnostic {
  line: number;
  column: number;
  message: string;
}

export class CompileError extends Error {
  constructor(readonly diagnostics: CompileDiagnostic[]) {
    super(diagnostics.map((d) => `line ${d.line}:${d.column} - ${d.message}`).join("\n"));
    this.name = "CompileError";
  }
}

export type RunOutcome =
  | { ok: true; value: unknown; hasValue: boolean }
  /** `line` is the 0-based line of the cell where the error was thrown, when it can be located. */
  | { ok: false; error: unknown; line?: number };

export type IsCompleteStatus = { status: "complete" | "invalid" | "unknown" } | { status: "incomplete"; indent: string };

interface Report {
  value?: unknown;
  hasValue: boolean;
  diagnostics: CompileDiagnostic[];
  thrown?: { error: unknown };
  converted?: ConvertResult;
}

interface Engine {
  executor: Executor;
  converters: ConverterSet;
  isCompleteCode(code: string): { completed: boolean; indent?: string };
  parseErrors(code: string): { start: number; length: number }[];
  printQuickInfo(info: unknown): string;
}

const require = createRequire(import.meta.url);

/**
 * TypeScript cells, compiled by tslab's converter and run by its executor in this process's
 * global context. The compiler is loaded lazily (it costs about a second) so that the kernel
 * answers kernel_info first; `warm()` loads it in the background.
 */
export class TypeScriptCells {
  private engine: Engine | undefined;
  /** Reports are a stack: `evaluate` from a magic may run while a cell awaits. */
  private readonly reports: Report[] = [];
  private lastOutput = "";
  /** Declarations of every cell that compiled, as the compiler sees them in the next cell. */
  private declarations = "";
  private readonly compiled = new CompileCache();

  constructor(private readonly rootDir: string = process.cwd()) {}

  /** Loads the compiler and runs the prelude (the first compile is the slow one). */
  warm(): Engine {
    if (this.engine) return this.engine;
    const converterModule = require("tslab/dist/converter.js") as typeof import("tslab/dist/converter.js");
    const executorModule = require("tslab/dist/executor.js") as typeof import("tslab/dist/executor.js");
    const inspectModule = require("tslab/dist/inspect.js") as { printQuickInfo(info: unknown): string };
    const ts = require("@tslab/typescript-for-tslab") as typeof import("@tslab/typescript-for-tslab");
    const node = converterModule.createConverter({ isJS: false, isBrowser: false });
    let browser: Converter | undefined;
    // The executor forgets a cell's declarations when the cell throws; the notebook keeps them
    // (its values were assigned up to the error), so the declarations the compiler sees are ours.
    const withOurDeclarations = (converter: Converter): Converter =>
      new Proxy(converter, {
        get: (target, prop, receiver) => {
          if (prop === "convert") {
            return (_prevDecl: string, src: string) => {
              const result = this.compiled.get(this.declarations, src) ?? this.compiled.put(this.declarations, src, target.convert(this.declarations, src));
              this.lastOutput = result.output ?? "";
              const report = this.reports.at(-1);
              if (report) report.converted = result;
              return result;
            };
          }
          if (prop === "complete") return (_prevDecl: string, src: string, position: number) => target.complete(this.declarations, src, position);
          if (prop === "inspect") return (_prevDecl: string, src: string, position: number) => target.inspect(this.declarations, src, position);
          return Reflect.get(target, prop, receiver) as unknown;
        },
      });
    const converters: ConverterSet = {
      node: withOurDeclarations(node),
      get browser() {
        browser ??= converterModule.createConverter({ isJS: false, isBrowser: true });
        return browser;
      },
      close() {
        node.close();
        browser?.close();
      },
    };
    const executor = executorModule.createExecutor(this.rootDir, converters, {
      log: (value: unknown) => {
        const report = this.reports.at(-1);
        if (report) {
          report.value = value;
          report.hasValue = true;
        }
      },
      error: (first: unknown, ...rest: unknown[]) => {
        const report = this.reports.at(-1);
        if (!report) return;
        if (first === "%s%d:%d - %s") {
          const [, line, column, message] = rest as [string, number, number, string];
          report.diagnostics.push({ line, column, message });
        } else {
          report.thrown = { error: first };
        }
      },
    });
    this.engine = {
      executor,
      converters,
      isCompleteCode: converterModule.isCompleteCode,
      parseErrors(code) {
        const file = ts.createSourceFile("cell.ts", code, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS) as unknown as {
          parseDiagnostics?: { start: number; length: number }[];
        };
        return file.parseDiagnostics ?? [];
      },
      printQuickInfo: inspectModule.printQuickInfo,
    };
    this.runPrelude();
    return this.engine;
  }

  get warmed(): boolean {
    return this.engine !== undefined;
  }

  /**
   * Compiles and runs `code` in the notebook scope. `startLine` (0-based) is where the code sits in
   * its cell, so that reported lines are the cell's.
   */
  async run(code: string, startLine = 0): Promise<RunOutcome> {
    const { executor } = this.warm();
    const report: Report = { hasValue: false, diagnostics: [] };
    this.reports.push(report);
    try {
      await executor.execute(code);
    } finally {
      this.reports.splice(this.reports.lastIndexOf(report), 1);
    }
    if (report.converted && report.converted.diagnostics.length === 0) this.declarations = report.converted.declOutput ?? "";
    if (report.diagnostics.length > 0) {
      const diagnostics = report.diagnostics.map((d) => ({ ...d, line: d.line + startLine }));
      return { ok: false, error: new CompileError(diagnostics), line: diagnostics[0].line - 1 };
    }
    if (report.thrown) {
      const error = asInterrupt(report.thrown.error);
      const jsLine = cellFrameLine(error);
      const tsLine = jsLine === undefined ? undefined : mapJsLine(this.lastOutput, jsLine, code);
      return { ok: false, error, line: tsLine === undefined ? undefined : tsLine + startLine };
    }
    return { ok: true, value: report.value, hasValue: report.hasValue };
  }

  complete(code: string, cursor: number): { matches: string[]; cursorStart: number; cursorEnd: number } {
    const info: CompletionInfo = this.warm().executor.complete(code, cursor);
    return { matches: info.candidates, cursorStart: info.start, cursorEnd: info.end };
  }

  /** Type and documentation of the symbol under the cursor, as plain text; null when there is none. */
  inspect(code: string, cursor: number): string | null {
    const engine = this.warm();
    const info = engine.executor.inspect(code, cursor);
    return info ? engine.printQuickInfo(info) : null;
  }

  isComplete(code: string): IsCompleteStatus {
    const engine = this.warm();
    const result = engine.isCompleteCode(code);
    if (!result.completed) return { status: "incomplete", indent: result.indent ?? "" };
    // A parse error before the end cannot be fixed by typing more lines.
    const errors = engine.parseErrors(code);
    return { status: errors.some((e) => e.start < code.trimEnd().length) ? "invalid" : "complete" };
  }

  /** Stops a pending top-level await (a synchronous loop is stopped by SIGINT itself). */
  interrupt(): void {
    this.engine?.executor.interrupt();
  }

  /** Forgets every variable and declaration, as after a kernel restart. */
  reset(): void {
    if (!this.engine) return;
    this.engine.executor.reset();
    this.declarations = "";
    this.runPrelude();
  }

  close(): void {
    this.engine?.converters.close();
  }

  private runPrelude(): void {
    const report: Report = { hasValue: false, diagnostics: [] };
    this.reports.push(report);
    // The prelude has no top-level await, so the executor runs it synchronously.
    void this.engine!.executor.execute(PRELUDE).finally(() => this.reports.splice(this.reports.lastIndexOf(report), 1));
    this.declarations = report.converted?.declOutput ?? "";
    if (report.diagnostics.length > 0 || report.thrown) {
      throw new Error(`the notebook prelude failed to compile: ${report.diagnostics.map((d) => d.message).join("; ") || String(report.thrown?.error)}`);
    }
  }
}

/**
 * Re-running a cell is the commonest thing a notebook does: when the code and every declaration
 * before it are unchanged, so is the compiler's output, and the 10-80 ms type check is skipped.
 * Cells that import modules or read side files are never cached (their inputs live on disk).
 */
class CompileCache {
  private readonly entries = new Map<string, ConvertResult>();
  private static readonly LIMIT = 64;

  get(prevDecl: string, src: string): ConvertResult | undefined {
    const key = `${prevDecl}\u0000${src}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
    }
    return hit;
  }

  put(prevDecl: string, src: string, result: ConvertResult): ConvertResult {
    if (result.sideOutputs || /\bimport\b|\brequire\s*\(|\/\/\/\s*</.test(src)) return result;
    this.entries.set(`${prevDecl}\u0000${src}`, result);
    if (this.entries.size > CompileCache.LIMIT) this.entries.delete(this.entries.keys().next().value as string);
    return result;
  }
}

function asInterrupt(error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : "";
  if (code === "ERR_SCRIPT_EXECUTION_INTERRUPTED" || message === "Interrupted asynchronously") {
    return new InterruptedError("Interrupted: the cell was stopped; variables assigned before the interrupt keep their values.");
  }
  return error;
}
