import type { CellIO, DisplayHandle } from "../session/cell-io.js";
import { isDisplayable, type DisplayOutput, type Displayable } from "./mime.js";

export type Renderable = DisplayOutput | Displayable;

export interface LiveDisplayOptions {
  /** At most this many outputs reach the notebook per second (default 4). */
  maxPerSecond?: number;
  /** Reuse an existing display id instead of making a new output. */
  id?: string;
}

/**
 * One output that changes in place as a job runs (a loss curve, a progress line). Updates faster
 * than the throttle are coalesced: only the latest is rendered and sent, at the end of the current
 * interval. `close` always sends the final state at once, so the last thing a person sees is true.
 */
export class LiveDisplay {
  readonly interval: number;
  private handle: DisplayHandle | undefined;
  private pending: (() => Renderable) | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private lastSent = -Infinity;
  private closed = false;
  private sent = 0;

  constructor(
    private readonly io: CellIO,
    private readonly options: LiveDisplayOptions = {},
  ) {
    const rate = options.maxPerSecond ?? 4;
    if (!(rate > 0)) throw new RangeError("maxPerSecond must be positive");
    this.interval = 1000 / rate;
  }

  /** The display id, once the first output was sent. */
  get id(): string | undefined {
    return this.handle?.id ?? this.options.id;
  }

  /** How many outputs were actually sent (the first display and each update). */
  get sentCount(): number {
    return this.sent;
  }

  /** Pass a function to defer rendering until the output is really sent (figures are costly). */
  update(output: Renderable | (() => Renderable)): void {
    if (this.closed) return;
    this.pending = typeof output === "function" && !isDisplayable(output) ? output : () => output as Renderable;
    if (this.timer) return;
    const wait = this.lastSent + this.interval - Date.now();
    if (wait <= 0) this.flush();
    else
      this.timer = setTimeout(() => {
        this.timer = undefined;
        // A throw here would have no caller to reach and would end the kernel: tell the cell instead.
        try {
          this.flush();
        } catch (error) {
          this.io.stderr(`display update failed: ${(error as Error).message}\n`);
        }
      }, wait);
  }

  /** Sends the latest pending update now, if there is one. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const render = this.pending;
    if (!render) return;
    this.pending = undefined;
    const output = render();
    if (this.handle) this.handle.update(output);
    else this.handle = this.io.display(output, this.options.id ? { id: this.options.id } : undefined);
    this.sent++;
    this.lastSent = Date.now();
  }

  /** Sends `final` (or the pending update) at once, whatever the throttle, and ignores later updates. */
  close(final?: Renderable | (() => Renderable)): void {
    if (this.closed) return;
    if (final !== undefined) this.pending = typeof final === "function" && !isDisplayable(final) ? final : () => final as Renderable;
    this.flush();
    this.closed = true;
  }
}
