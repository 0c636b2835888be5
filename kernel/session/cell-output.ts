import { randomUUID } from "node:crypto";
import { toDisplayOutput, type DisplayOutput, type Displayable } from "../display/mime.js";
import type { JsonObject } from "../protocol/wire.js";
import type { CellIO, DisplayHandle } from "./cell-io.js";

/** Sends one iopub message on behalf of a request. */
export type Publish = (msgType: string, content: JsonObject) => void;

/**
 * The CellIO of one execute request. Stream text is coalesced (a loop of console.log calls is a
 * few messages, not thousands) and always flushed before any other output, so order is kept.
 * A silent request gets a CellIO without `publish`: its outputs are dropped.
 */
export class CellOutput implements CellIO {
  private readonly controller = new AbortController();
  private pending: { name: "stdout" | "stderr"; text: string } | undefined;
  private flushScheduled = false;

  constructor(private readonly publish: Publish | undefined) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  stdout(text: string): void {
    this.write("stdout", text);
  }

  stderr(text: string): void {
    this.write("stderr", text);
  }

  display(output: DisplayOutput | Displayable, options: { id?: string } = {}): DisplayHandle {
    const id = options.id ?? randomUUID().replace(/-/g, "");
    this.send("display_data", this.bundle(output, id));
    return {
      id,
      update: (next: DisplayOutput | Displayable) => this.send("update_display_data", this.bundle(next, id)),
    };
  }

  clearOutput(wait = false): void {
    this.send("clear_output", { wait });
  }

  /** Publishes any other message of this cell (execute_result, error) after the pending stream text. */
  send(msgType: string, content: JsonObject): void {
    this.flush();
    this.publish?.(msgType, content);
  }

  flush(): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    this.publish?.("stream", { name: pending.name, text: pending.text });
  }

  private write(name: "stdout" | "stderr", text: string): void {
    if (!this.publish || text.length === 0) return;
    if (this.pending && this.pending.name !== name) this.flush();
    if (this.pending) this.pending.text += text;
    else this.pending = { name, text };
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private bundle(output: DisplayOutput | Displayable, id: string): JsonObject {
    const shown = toDisplayOutput(output);
    return { data: shown.data, metadata: shown.metadata ?? {}, transient: { display_id: id } };
  }
}
