import { DISPLAY, toDisplayOutput, type DisplayOutput, type Displayable, type MimeBundle } from "./mime.js";
import { escapeHtml } from "./format.js";

/** A fixed MIME bundle that shows itself when returned from a cell or passed to `display`. */
export class Bundle implements Displayable {
  constructor(
    readonly data: MimeBundle,
    readonly metadata: Record<string, unknown> = {},
  ) {}

  [DISPLAY](): DisplayOutput {
    return { data: this.data, metadata: this.metadata };
  }
}

export function text(content: string): Bundle {
  return new Bundle({ "text/plain": content });
}

export function markdown(content: string, plain = content): Bundle {
  return new Bundle({ "text/markdown": content, "text/plain": plain });
}

export function html(content: string, plain?: string): Bundle {
  return new Bundle({ "text/html": content, "text/plain": plain ?? htmlToPlain(content) });
}

function htmlToPlain(content: string): string {
  return content
    .replace(/<(script|style)[\s\S]*?<\/\1>/gi, "")
    .replace(/<br\s*\/?>|<\/(p|div|tr|li|h\d)>/gi, "\n")
    .replace(/<[^>]*>/g, "")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&")
    .trim();
}

/**
 * Lets a plain value (an array of rows, a record) keep its shape for TypeScript while showing
 * itself richly: the display method is non-enumerable, so it never appears in keys or JSON.
 */
export function withDisplay<T extends object>(value: T, render: () => DisplayOutput | Displayable): T & Displayable {
  Object.defineProperty(value, DISPLAY, { value: () => toDisplayOutput(render()), enumerable: false, configurable: true });
  return value as T & Displayable;
}

export { escapeHtml };
