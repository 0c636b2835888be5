import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { toDisplayOutput } from "../display/mime.js";
import { InterruptedError, UsageError } from "../errors.js";
import type { CellSegment, MagicContext, MagicRunner } from "../magics/schema.js";
import { PACKAGE_ROOT } from "../paths.js";
import type { KernelSockets, RequestChannel } from "../protocol/sockets.js";
import type { JsonObject, Message } from "../protocol/wire.js";
import { PROTOCOL_VERSION } from "../protocol/wire.js";
import type { TypeScriptCells } from "../typescript/executor.js";
import type { CellIO } from "./cell-io.js";
import { CellOutput } from "./cell-output.js";
import { codePointToIndex, indexToCodePoint, lineOffset } from "./cursor.js";
import { describeFailure, errorRecord, type Failure } from "./failure.js";
import { History, type HistoryEntry, type HistoryQuery } from "./history.js";
import { installNotebookApi, isDisplayHandle, MagicResults } from "./notebook-api.js";
import { Services } from "./services.js";
import { setStreamSink, writeToProcess } from "./streams.js";

export interface KernelOptions {
  sockets: KernelSockets;
  cells: TypeScriptCells;
  /** Loaded after start-up, so that kernel_info is answered before the magics are imported. */
  loadRunner(): Promise<MagicRunner>;
  cwd: string;
  /** The kernel's own diagnostics (never a cell's output). */
  log(line: string): void;
  /** Called once a shutdown_request was answered and every resource released. */
  onShutdown(restart: boolean): void;
}

type CellResult = { ok: true; value: unknown; hasValue: boolean } | { ok: false; failure: Failure };

const require = createRequire(import.meta.url);
/** How long an interrupted cell waits for the magics it started to stop (a %tune step is < 1 s). */
const MAGIC_SETTLE_MS = 15_000;
const VERSIONS = (() => {
  const read = (path: string) => (JSON.parse(readFileSync(path, "utf8")) as { version: string }).version;
  return {
    tunelab: read(join(PACKAGE_ROOT, "package.json")),
    typescript: read(require.resolve("@tslab/typescript-for-tslab/package.json")),
  };
})();

/**
 * The execute loop: shell requests one at a time in order, control requests at once, `busy`/`idle`
 * around each, one execution counter, and every cell split into TypeScript and magic segments.
 */
export class Kernel {
  private readonly queue: Message[] = [];
  private pumping = false;
  /** Queued execute requests to answer "aborted" (sent before the client saw an error; stop_on_error). */
  private readonly aborted = new Set<Message>();
  /** `tunelab.magic(...)` calls not yet finished (see settleMagics). */
  private readonly magicsInFlight = new Set<Promise<unknown>>();
  private executionCount = 0;
  private services = new Services();
  private readonly history = new History();
  private readonly results = new MagicResults();
  private active: CellOutput | undefined;
  private runnerPromise: Promise<MagicRunner> | undefined;
  private warmTimer: NodeJS.Timeout | undefined;
  private shuttingDown = false;

  constructor(private readonly options: KernelOptions) {
    installNotebookApi({ currentIO: () => this.currentIO(), runMagicLine: (line) => this.runMagicLine(line) }, this.results);
  }

  get sockets(): KernelSockets {
    return this.options.sockets;
  }

  start(): void {
    setStreamSink((name, text) => (this.active ? this.active[name](text) : writeToProcess(name, text)));
    this.sockets.listen("shell", (message) => this.enqueue(message));
    this.sockets.listen("control", (message) => void this.handleControl(message));
    this.sockets.listen("stdin", () => undefined);
    void this.sockets.publish("status", { execution_state: "starting" }, undefined);
    // Compile-warm in the background; a client that asks for kernel_info first is answered first.
    this.warmTimer = setTimeout(() => this.warmSoon(), 500);
  }

  /** Interrupt from SIGINT or interrupt_request: stops a pending await and aborts the cell's signal. */
  interrupt(): void {
    this.options.cells.interrupt();
    this.active?.abort(new InterruptedError());
  }

  /** Releases children and compilers (shutdown, SIGTERM). */
  async dispose(): Promise<void> {
    clearTimeout(this.warmTimer);
    await this.services.disposeAll();
    this.options.cells.close();
    await this.sockets.close();
  }

  private warmSoon(): void {
    if (this.warmTimer === undefined && this.options.cells.warmed) return;
    clearTimeout(this.warmTimer);
    this.warmTimer = undefined;
    setImmediate(() => {
      try {
        this.options.cells.warm();
      } catch (error) {
        this.options.log(`tunelab: TypeScript warm-up failed: ${(error as Error).message}`);
      }
      // Leave a first cell that was waiting for the compiler a head start on the magics.
      setTimeout(() => void this.runner().catch((error: Error) => this.options.log(`tunelab: loading the magics failed: ${error.message}`)), 1000);
    });
  }

  private runner(): Promise<MagicRunner> {
    this.runnerPromise ??= this.options.loadRunner();
    return this.runnerPromise;
  }

  /**
   * A cell without a `%` line is all TypeScript: it runs without waiting for the magics to load
   * (they load in the background after the compiler, and cost a second or more on a busy machine).
   */
  private async segmentsOf(code: string): Promise<CellSegment[]> {
    if (!mayHoldMagic(code)) return code.trim() === "" ? [] : [{ kind: "code", code, startLine: 0 }];
    return (await this.runner()).parseCell(code);
  }

  private currentIO(): CellIO {
    return this.active ?? new CellOutput(undefined);
  }

  // ---- queue -------------------------------------------------------------------------------

  private enqueue(message: Message): void {
    this.queue.push(message);
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const message = this.queue.shift()!;
        if (this.aborted.delete(message)) {
          await this.withStatus(message, () => this.abortExecute(message));
        } else {
          await this.withStatus(message, () => this.handle("shell", message));
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private async withStatus(message: Message, work: () => Promise<void>): Promise<void> {
    void this.sockets.publish("status", { execution_state: "busy" }, message.header);
    try {
      await work();
    } catch (error) {
      this.options.log(`tunelab: ${message.header.msg_type} failed: ${(error as Error).stack ?? String(error)}`);
    } finally {
      await this.sockets.publish("status", { execution_state: "idle" }, message.header);
    }
  }

  private async handleControl(message: Message): Promise<void> {
    await this.withStatus(message, () => this.handle("control", message));
  }

  private async handle(channel: RequestChannel, message: Message): Promise<void> {
    const reply = (type: string, content: JsonObject) => this.sockets.reply(channel, message, type, content);
    const content = message.content;
    switch (message.header.msg_type) {
      case "kernel_info_request":
        await reply("kernel_info_reply", this.kernelInfo());
        this.warmSoon();
        return;
      case "execute_request":
        return this.execute(message);
      case "complete_request":
        return void (await reply("complete_reply", await this.complete(String(content.code ?? ""), Number(content.cursor_pos ?? 0))));
      case "inspect_request":
        return void (await reply("inspect_reply", await this.inspect(String(content.code ?? ""), Number(content.cursor_pos ?? 0))));
      case "is_complete_request":
        return void (await reply("is_complete_reply", await this.isComplete(String(content.code ?? ""))));
      case "history_request":
        return void (await reply("history_reply", { status: "ok", history: this.history.query(content as HistoryQuery) }));
      case "comm_info_request":
        return void (await reply("comm_info_reply", { status: "ok", comms: {} }));
      case "interrupt_request":
        this.interrupt();
        return void (await reply("interrupt_reply", { status: "ok" }));
      case "shutdown_request":
        return this.shutdown(reply, content.restart === true);
      case "comm_open":
      case "comm_msg":
      case "comm_close":
        return; // no comm targets: messages for unknown comms are ignored, as ipykernel does
      default:
        this.options.log(`tunelab: ignored unknown ${channel} message ${message.header.msg_type}`);
    }
  }

  private kernelInfo(): JsonObject {
    return {
      status: "ok",
      protocol_version: PROTOCOL_VERSION,
      implementation: "tunelab",
      implementation_version: VERSIONS.tunelab,
      language_info: {
        name: "typescript",
        version: VERSIONS.typescript,
        mimetype: "text/typescript",
        file_extension: ".ts",
        pygments_lexer: "typescript",
        codemirror_mode: "typescript",
        nbconvert_exporter: "script",
      },
      banner: `tunelab ${VERSIONS.tunelab}: TypeScript ${VERSIONS.typescript} on Node ${process.versions.node}, with magics for MLX fine-tuning and ANE benchmarks (%lsmagic lists them).`,
      help_links: [],
      debugger: false,
    };
  }

  // ---- execute -----------------------------------------------------------------------------

  private async execute(request: Message): Promise<void> {
    const content = request.content;
    const code = typeof content.code === "string" ? content.code : "";
    const silent = content.silent === true;
    const storeHistory = !silent && content.store_history !== false;
    const stopOnError = content.stop_on_error !== false;
    if (storeHistory) this.executionCount++;
    const count = this.executionCount;
    const publish = (type: string, body: JsonObject) => void this.sockets.publish(type, body, request.header);
    if (!silent) publish("execute_input", { code, execution_count: count });
    const entry = storeHistory ? this.history.add(count, code) : undefined;

    const io = new CellOutput(silent ? undefined : publish);
    const previous = this.active;
    this.active = io;
    // A synchronous cell blocks the event loop: busy and execute_input must be on the wire first.
    await this.sockets.flushed();
    let result = await this.runCell(code, io);
    // Late output (timers, callbacks) belongs to the last visible cell, never to a silent request.
    if (silent) this.active = previous;
    if (result.ok && result.hasValue && !isDisplayHandle(result.value) && !silent) {
      try {
        const shown = toDisplayOutput(result.value);
        io.send("execute_result", { execution_count: count, data: shown.data, metadata: shown.metadata ?? {} });
        if (entry) entry.output = plainText(shown.data);
      } catch (error) {
        result = { ok: false, failure: this.failure(error, code) };
      }
    }
    io.flush();
    if (!result.ok) {
      io.send("error", { ...result.failure });
      if (stopOnError) {
        // Abort what the client sent before it could know of this error: requests already
        // received, after one turn of the event loop for those still in flight. Decided before
        // the reply goes out, so a cell sent in answer to the reply is never among them (deciding
        // after it aborted such a cell whenever the client answered within that turn).
        await new Promise((resolve) => setImmediate(resolve));
        for (const queued of this.queue) if (queued.header.msg_type === "execute_request") this.aborted.add(queued);
      }
      await this.sockets.reply("shell", request, "execute_reply", { status: "error", execution_count: count, ...result.failure });
      return;
    }
    const userExpressions = await this.userExpressions(content.user_expressions);
    await this.sockets.reply("shell", request, "execute_reply", { status: "ok", execution_count: count, payload: [], user_expressions: userExpressions });
  }

  private async abortExecute(request: Message): Promise<void> {
    await this.sockets.reply("shell", request, "execute_reply", {
      status: "error",
      execution_count: this.executionCount,
      ename: "ExecutionAborted",
      evalue: "Not run because an earlier cell failed.",
      traceback: [],
    });
  }

  private async runCell(code: string, io: CellOutput): Promise<CellResult> {
    let segments: CellSegment[];
    try {
      segments = await this.segmentsOf(code);
    } catch (error) {
      return { ok: false, failure: this.failure(error, code) };
    }
    let last: CellResult = { ok: true, value: undefined, hasValue: false };
    for (const segment of segments) {
      if (segment.kind === "code") {
        const outcome = await this.options.cells.run(segment.code, segment.startLine);
        if (!outcome.ok) {
          await this.settleMagics();
          return { ok: false, failure: this.failure(outcome.error, code, outcome.line) };
        }
        last = outcome;
        continue;
      }
      try {
        const outcome = await (await this.runner()).run(segment, this.magicContext(io));
        this.results.record(outcome.name, outcome.value);
        last = { ok: true, value: outcome.value, hasValue: outcome.showsResult && outcome.value !== undefined };
      } catch (error) {
        return { ok: false, failure: this.failure(error, code, segment.startLine) };
      }
    }
    return last;
  }

  /** The cell's error as Jupyter shows it; kept for `%tb` and `tunelab.lastError`. */
  private failure(error: unknown, code: string, line?: number): Failure {
    this.results.lastError = errorRecord(error);
    return describeFailure(error, code, line);
  }

  private magicContext(io: CellIO): MagicContext {
    return {
      io,
      services: this.services,
      cwd: this.options.cwd,
      lastError: () => this.results.lastError,
      evaluate: async (source: string) => {
        const outcome = await this.options.cells.run(source);
        if (!outcome.ok) throw outcome.error;
        return outcome.value;
      },
    };
  }

  /** `await tunelab.magic("%name args")` from a cell: outputs land in the current cell. */
  private async runMagicLine(line: string): Promise<unknown> {
    const run = this.runMagicSegments(line);
    this.magicsInFlight.add(run);
    try {
      return await run;
    } finally {
      this.magicsInFlight.delete(run);
    }
  }

  /**
   * An interrupt ends the cell's pending await at once, but a magic the cell started through
   * `tunelab.magic` gets the same abort and needs a moment to stop (the bridge cancels at the
   * next step, then the live display says where it stopped): wait for it, so that its last
   * output lands in this cell rather than nowhere.
   */
  private async settleMagics(): Promise<void> {
    if (this.magicsInFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((resolve) => (timer = setTimeout(resolve, MAGIC_SETTLE_MS)));
    await Promise.race([Promise.allSettled([...this.magicsInFlight]), deadline]);
    clearTimeout(timer);
  }

  private async runMagicSegments(line: string): Promise<unknown> {
    const runner = await this.runner();
    const segments = runner.parseCell(line).filter((s): s is Exclude<CellSegment, { kind: "code" }> => s.kind !== "code");
    if (segments.length === 0) {
      throw new UsageError(`tunelab.magic expects a magic line such as "%lsmagic", got ${JSON.stringify(line)}.`);
    }
    let value: unknown;
    for (const segment of segments) {
      const outcome = await runner.run(segment, this.magicContext(this.currentIO()));
      this.results.record(outcome.name, outcome.value);
      value = outcome.value;
    }
    return value;
  }

  private async userExpressions(expressions: unknown): Promise<JsonObject> {
    const out: JsonObject = {};
    if (typeof expressions !== "object" || expressions === null) return out;
    for (const [name, source] of Object.entries(expressions as Record<string, unknown>)) {
      const outcome = await this.options.cells.run(String(source));
      if (outcome.ok) {
        const shown = toDisplayOutput(outcome.value);
        out[name] = { status: "ok", data: shown.data, metadata: shown.metadata ?? {} };
      } else {
        out[name] = { status: "error", ...describeFailure(outcome.error, String(source), outcome.line) };
      }
    }
    return out;
  }

  // ---- completion, inspection ----------------------------------------------------------------

  /** The code segment under the cursor, with the cursor made relative to it; null on a magic line. */
  private async codeAt(code: string, cursor: number): Promise<{ code: string; cursor: number; offset: number } | null> {
    const segments = await this.segmentsOf(code);
    if (segments.length === 1 && segments[0].kind === "code" && segments[0].startLine === 0) return { code, cursor, offset: 0 };
    for (const segment of segments) {
      if (segment.kind !== "code") continue;
      const offset = lineOffset(code, segment.startLine);
      if (cursor >= offset && cursor <= offset + segment.code.length) return { code: segment.code, cursor: cursor - offset, offset };
    }
    return null;
  }

  private async complete(code: string, cursorPos: number): Promise<JsonObject> {
    const cursor = codePointToIndex(code, cursorPos);
    let found: { matches: string[]; cursorStart: number; cursorEnd: number } | null = null;
    try {
      found = mayHoldMagic(code) ? (await this.runner()).complete(code, cursor) : null;
      if (!found) {
        const at = await this.codeAt(code, cursor);
        if (at) {
          const inner = this.options.cells.complete(at.code, at.cursor);
          found = { matches: inner.matches, cursorStart: inner.cursorStart + at.offset, cursorEnd: inner.cursorEnd + at.offset };
        }
      }
    } catch (error) {
      this.options.log(`tunelab: completion failed: ${(error as Error).message}`);
    }
    found ??= { matches: [], cursorStart: cursor, cursorEnd: cursor };
    return {
      status: "ok",
      matches: found.matches,
      cursor_start: indexToCodePoint(code, found.cursorStart),
      cursor_end: indexToCodePoint(code, found.cursorEnd),
      metadata: {},
    };
  }

  private async inspect(code: string, cursorPos: number): Promise<JsonObject> {
    const cursor = codePointToIndex(code, cursorPos);
    try {
      const help = mayHoldMagic(code) ? (await this.runner()).inspect(code, cursor) : null;
      if (help) return { status: "ok", found: true, data: help.data, metadata: help.metadata ?? {} };
      const at = await this.codeAt(code, cursor);
      const text = at ? this.options.cells.inspect(at.code, at.cursor) : null;
      if (text) return { status: "ok", found: true, data: { "text/plain": text }, metadata: {} };
    } catch (error) {
      this.options.log(`tunelab: inspection failed: ${(error as Error).message}`);
    }
    return { status: "ok", found: false, data: {}, metadata: {} };
  }

  private async isComplete(code: string): Promise<JsonObject> {
    const segments = await this.segmentsOf(code);
    const last = segments.at(-1);
    for (const segment of segments) {
      if (segment.kind !== "code") continue;
      const status = this.options.cells.isComplete(segment.code);
      if (status.status === "incomplete" && segment === last) return { status: "incomplete", indent: status.indent };
      if (status.status === "invalid") return { status: "invalid" };
    }
    return { status: "complete" };
  }

  // ---- shutdown ------------------------------------------------------------------------------

  private async shutdown(reply: (type: string, content: JsonObject) => Promise<void>, restart: boolean): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    await reply("shutdown_reply", { status: "ok", restart });
    this.interrupt();
    // A restart starts from a clean notebook scope: no variables, no magic results, no children.
    const services = this.services;
    this.services = new Services();
    await services.disposeAll();
    this.results.clear();
    if (restart) this.options.cells.reset();
    setImmediate(() => this.options.onShutdown(restart));
  }
}

function mayHoldMagic(code: string): boolean {
  return /^[ \t]*%/m.test(code);
}

function plainText(data: Record<string, unknown>): string | null {
  const text = data["text/plain"];
  return typeof text === "string" ? text : null;
}

export type { HistoryEntry };
