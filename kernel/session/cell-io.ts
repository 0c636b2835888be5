import type { DisplayOutput, Displayable } from "../display/mime.js";

/** One output slot that can be replaced in place (`update_display_data`). */
export interface DisplayHandle {
  readonly id: string;
  update(output: DisplayOutput | Displayable): void;
}

/**
 * Everything that runs inside a cell (TypeScript code, a magic) talks to the notebook through
 * this interface. The session binds it to the request being executed, so outputs always land in
 * the cell that produced them.
 */
export interface CellIO {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Shows an output; pass `id` to reuse a display id, else a fresh one is made. */
  display(output: DisplayOutput | Displayable, options?: { id?: string }): DisplayHandle;
  clearOutput(wait?: boolean): void;
  /** Aborted when the user interrupts the cell (signal or `interrupt_request`). */
  readonly signal: AbortSignal;
}
