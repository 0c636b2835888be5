import type { CellIO, DisplayHandle } from "../../kernel/session/cell-io.js";
import { toDisplayOutput, type DisplayOutput, type Displayable } from "../../kernel/display/mime.js";

/** What a cell sent to the notebook, in order, as the session would publish it. */
export type Sent =
  | { kind: "stdout" | "stderr"; text: string }
  | { kind: "display" | "update"; id: string; output: DisplayOutput }
  | { kind: "clear"; wait: boolean };

/** A CellIO that records every output instead of publishing it. */
export class RecordingIO implements CellIO {
  readonly sent: Sent[] = [];
  private nextId = 1;
  private readonly controller = new AbortController();
  readonly signal = this.controller.signal;

  stdout(text: string): void {
    this.sent.push({ kind: "stdout", text });
  }
  stderr(text: string): void {
    this.sent.push({ kind: "stderr", text });
  }
  display(output: DisplayOutput | Displayable, options?: { id?: string }): DisplayHandle {
    const id = options?.id ?? `d${this.nextId++}`;
    this.sent.push({ kind: "display", id, output: toDisplayOutput(output) });
    return { id, update: (next) => this.sent.push({ kind: "update", id, output: toDisplayOutput(next) }) };
  }
  clearOutput(wait = false): void {
    this.sent.push({ kind: "clear", wait });
  }
  interrupt(): void {
    this.controller.abort();
  }
  text(kind: "stdout" | "stderr" = "stdout"): string {
    return this.sent.flatMap((s) => (s.kind === kind ? [s.text] : [])).join("");
  }
  displays(): DisplayOutput[] {
    return this.sent.flatMap((s) => (s.kind === "display" || s.kind === "update" ? [s.output] : []));
  }
}
