import type { ProgressEvent, ValEvent } from "./types.js";


/**
 * The bridge's events, typed: each is checked when it arrives (docs/bridge-protocol.md), so a
 * magic never reads a field the bridge did not send. An event of another shape is dropped, not
 * cast: a newer bridge may add events an older kernel does not know.
 */
export type TuneEvent =
  | { event: "progress"; data: ProgressEvent }
  | { event: "val"; data: ValEvent }
  | { event: "phase"; data: { name: string; detail?: string } }
  | { event: "eval"; data: { prompt: string; when: "before" | "after"; text: string } }
  | { event: "checkpoint"; data: { step: number; path: string } };

export type GenerateEvent = { event: "token"; data: { text: string } };

type Data = Record<string, unknown>;

const isNumber = (v: unknown): v is number => typeof v === "number";
const isString = (v: unknown): v is string => typeof v === "string";
// Rates are null before the first timed step (and JSON has no NaN): numbers or null.
const isRate = (v: unknown): v is number | null => v === null || isNumber(v);

function progress(d: Data): TuneEvent | null {
  const { step, iters, loss, trained_tokens, elapsed_s, lr, it_per_s, tokens_per_s, peak_memory_gb } = d;
  if (!isNumber(step) || !isNumber(iters) || !isNumber(loss) || !isNumber(trained_tokens) || !isNumber(elapsed_s)) return null;
  if (!isNumber(lr) || !isNumber(peak_memory_gb) || !isRate(it_per_s) || !isRate(tokens_per_s)) return null;
  return { event: "progress", data: { step, iters, loss, trained_tokens, elapsed_s, lr, peak_memory_gb, it_per_s, tokens_per_s } };
}

export function tuneEvent(event: string, data: Data): TuneEvent | null {
  switch (event) {
    case "progress":
      return progress(data);
    case "val":
      return isNumber(data.step) && isNumber(data.val_loss) ? { event, data: { step: data.step, val_loss: data.val_loss } } : null;
    case "phase":
      return isString(data.name) ? { event, data: { name: data.name, ...(isString(data.detail) ? { detail: data.detail } : {}) } } : null;
    case "eval":
      return isString(data.prompt) && (data.when === "before" || data.when === "after") && isString(data.text)
        ? { event, data: { prompt: data.prompt, when: data.when, text: data.text } }
        : null;
    case "checkpoint":
      return isNumber(data.step) && isString(data.path) ? { event, data: { step: data.step, path: data.path } } : null;
    default:
      return null;
  }
}

export function generateEvent(event: string, data: Data): GenerateEvent | null {
  return event === "token" && isString(data.text) ? { event, data: { text: data.text } } : null;
}
