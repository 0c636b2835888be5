import type { CellIO } from "../session/cell-io.js";
import { Bundle } from "./bundle.js";
import { escapeHtml, formatDuration, formatValue } from "./format.js";
import { LiveDisplay } from "./live.js";

export interface ProgressState {
  done: number;
  total?: number;
  label?: string;
  /** Extra figures shown after the bar, in order: `{ loss: 1.234, "it/s": 5.1 }`. */
  fields?: Readonly<Record<string, number | string>>;
  elapsedSeconds?: number;
}

const WIDTH = 24;

/** `tune  40/100 ━━━━━━━━━━──────────────  40% · loss 1.234 · 5.1 it/s · 12.0 s, eta 18.0 s` */
export function progressLine(state: ProgressState): string {
  const parts: string[] = [];
  if (state.label) parts.push(state.label);
  const total = state.total !== undefined && state.total > 0 ? state.total : undefined;
  if (total !== undefined) {
    const fraction = Math.max(0, Math.min(1, state.done / total));
    const filled = Math.round(fraction * WIDTH);
    parts.push(`${state.done}/${total} ${"━".repeat(filled)}${"─".repeat(WIDTH - filled)} ${String(Math.floor(fraction * 100)).padStart(3)}%`);
  } else {
    parts.push(String(state.done));
  }
  const extras = Object.entries(state.fields ?? {}).map(([k, v]) => (k.includes("/") ? `${formatValue(v)} ${k}` : `${k} ${formatValue(v)}`));
  if (state.elapsedSeconds !== undefined) {
    let time = formatDuration(state.elapsedSeconds);
    if (total !== undefined && state.done > 0 && state.done < total) time += `, eta ${formatDuration((state.elapsedSeconds / state.done) * (total - state.done))}`;
    extras.push(time);
  }
  return [parts.join("  "), ...extras].join(" · ");
}

/** A progress line as a display: plain text, and HTML with a native progress bar. */
export function progressBundle(state: ProgressState): Bundle {
  const line = progressLine(state);
  const bar =
    state.total !== undefined && state.total > 0
      ? `<progress value="${Math.max(0, Math.min(state.done, state.total))}" max="${state.total}" style="width:14em;vertical-align:middle"></progress> `
      : "";
  const label = state.label ? `<b>${escapeHtml(state.label)}</b> ` : "";
  const rest = escapeHtml(progressLine({ ...state, label: undefined }).replace(/^\S+ [━─]+ /, ""));
  return new Bundle({ "text/plain": line, "text/html": `<div class="tunelab-progress" style="font-family:monospace">${label}${bar}${rest}</div>` });
}

/** A progress line updated in place at most a few times per second, with elapsed time and ETA. */
export class Progress {
  private readonly live: LiveDisplay;
  private readonly started = Date.now();
  private state: ProgressState;

  constructor(io: CellIO, options: { total?: number; label?: string; maxPerSecond?: number } = {}) {
    this.live = new LiveDisplay(io, { maxPerSecond: options.maxPerSecond ?? 4 });
    this.state = { done: 0, total: options.total, label: options.label };
  }

  update(done: number, fields?: ProgressState["fields"]): void {
    this.state = { ...this.state, done, fields: fields ?? this.state.fields };
    this.live.update(() => progressBundle(this.snapshot()));
  }

  finish(fields?: ProgressState["fields"]): void {
    if (fields) this.state = { ...this.state, fields };
    this.live.close(progressBundle(this.snapshot()));
  }

  private snapshot(): ProgressState {
    return { ...this.state, elapsedSeconds: (Date.now() - this.started) / 1000 };
  }
}
