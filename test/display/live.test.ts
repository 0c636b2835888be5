import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LiveDisplay, Progress, text } from "../../kernel/display/index.js";
import { RecordingIO } from "./fake-io.js";

describe("LiveDisplay", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const shown = (io: RecordingIO) => io.sent.map((s) => (s.kind === "display" || s.kind === "update" ? `${s.kind}:${s.output.data["text/plain"]}` : s.kind));

  it("sends the first update at once and coalesces the rest to the latest per interval", () => {
    const io = new RecordingIO();
    const live = new LiveDisplay(io, { maxPerSecond: 4 });
    let renders = 0;
    const render = (n: number) => () => (renders++, text(`step ${n}`));
    live.update(render(1));
    expect(shown(io)).toEqual(["display:step 1"]);
    for (let n = 2; n <= 10; n++) {
      vi.advanceTimersByTime(20);
      live.update(render(n));
    }
    expect(shown(io)).toEqual(["display:step 1"]);
    vi.advanceTimersByTime(250);
    expect(shown(io)).toEqual(["display:step 1", "update:step 10"]);
    // Coalesced updates are never rendered.
    expect(renders).toBe(2);
    vi.advanceTimersByTime(5_000);
    expect(io.sent).toHaveLength(2);
  });

  it("never exceeds the rate however fast updates come", () => {
    const io = new RecordingIO();
    const live = new LiveDisplay(io, { maxPerSecond: 5 });
    for (let ms = 0; ms < 10_000; ms += 3) {
      live.update(text(`t=${ms}`));
      vi.advanceTimersByTime(3);
    }
    // 10 s at 5 per second, plus the immediate first one.
    expect(io.sent.length).toBeLessThanOrEqual(51);
    expect(io.sent.length).toBeGreaterThanOrEqual(45);
    const times = io.sent.map((s) => Number(String((s as { output: { data: Record<string, unknown> } }).output.data["text/plain"]).slice(2)));
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(195);
  });

  it("always flushes the final state at once on close, and ignores later updates", () => {
    const io = new RecordingIO();
    const live = new LiveDisplay(io, { maxPerSecond: 1 });
    live.update(text("a"));
    live.update(text("b"));
    live.close(text("final"));
    expect(shown(io)).toEqual(["display:a", "update:final"]);
    live.update(text("late"));
    vi.advanceTimersByTime(5_000);
    expect(shown(io)).toEqual(["display:a", "update:final"]);
    expect(live.id).toBe("d1");
  });

  it("flushes a pending update on close without a final state", () => {
    const io = new RecordingIO();
    const live = new LiveDisplay(io, { maxPerSecond: 2 });
    live.update(text("a"));
    live.update(text("b"));
    live.close();
    expect(shown(io)).toEqual(["display:a", "update:b"]);
  });

  it("drives a progress line with elapsed time and a final flush", () => {
    const io = new RecordingIO();
    const progress = new Progress(io, { total: 4, label: "tune", maxPerSecond: 2 });
    progress.update(1, { loss: 2 });
    vi.advanceTimersByTime(1000);
    progress.update(2, { loss: 1.5 });
    progress.update(3, { loss: 1.2 });
    progress.finish({ loss: 1 });
    const lines = shown(io);
    expect(lines[0]).toMatch(/^display:tune {2}1\/4 ━{6}─{18} {2}25% · loss 2 · /);
    expect(lines.at(-1)).toMatch(/^update:tune {2}3\/4 ━{18}─{6} {2}75% · loss 1 · 1.00 s, eta 333 ms$/);
    expect(lines).toHaveLength(3);
  });
});

describe("LiveDisplay failures", () => {
  it("reports a render that throws in a deferred update to the cell instead of crashing", () => {
    vi.useFakeTimers();
    try {
      const io = new RecordingIO();
      const live = new LiveDisplay(io, { maxPerSecond: 4 });
      live.update(text("ok"));
      live.update(() => {
        throw new Error("bad figure");
      });
      vi.advanceTimersByTime(300);
      expect(io.text("stderr")).toBe("display update failed: bad figure\n");
    } finally {
      vi.useRealTimers();
    }
  });
});
