import { inspect } from "node:util";

/** A Jupyter MIME bundle: MIME type -> data (a string, or JSON for `application/*+json` types). */
export type MimeBundle = Record<string, unknown>;

/** What a display output carries on the wire (`display_data`, `execute_result`). */
export interface DisplayOutput {
  data: MimeBundle;
  metadata?: Record<string, unknown>;
}

/**
 * Values display themselves (Deno's convention): any object with a method under this symbol
 * returns its own MIME bundle, so the kernel needs no list of known types.
 */
export const DISPLAY = Symbol.for("Jupyter.display");

export interface Displayable {
  [DISPLAY](): MimeBundle | DisplayOutput;
}

export function isDisplayable(value: unknown): value is Displayable {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as Record<symbol, unknown>)[DISPLAY] === "function"
  );
}

function isDisplayOutput(value: unknown): value is DisplayOutput {
  return typeof value === "object" && value !== null && "data" in value && typeof (value as DisplayOutput).data === "object";
}

/** Turns any value into a display output: its own bundle when it has one, else `text/plain`. */
export function toDisplayOutput(value: unknown): DisplayOutput {
  if (isDisplayable(value)) {
    const shown = value[DISPLAY]();
    return isDisplayOutput(shown) ? shown : { data: shown, metadata: {} };
  }
  if (isDisplayOutput(value)) return value;
  const text = typeof value === "string" ? inspect(value) : inspect(value, { depth: 4, colors: false, maxArrayLength: 50 });
  return { data: { "text/plain": text }, metadata: {} };
}
