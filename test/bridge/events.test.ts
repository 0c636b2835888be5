import { describe, expect, it } from "vitest";
import { generateEvent, tuneEvent } from "../../kernel/bridge/events.js";

describe("the bridge's events, checked as they arrive", () => {
  const progress = { step: 3, iters: 10, loss: 1.5, lr: 5e-5, it_per_s: null, tokens_per_s: 12, trained_tokens: 90, peak_memory_gb: 0.1, elapsed_s: 2 };

  it("types the events a magic reads", () => {
    expect(tuneEvent("progress", progress)).toEqual({ event: "progress", data: progress });
    expect(tuneEvent("val", { step: 3, val_loss: 0.5 })).toEqual({ event: "val", data: { step: 3, val_loss: 0.5 } });
    expect(tuneEvent("phase", { name: "training", detail: 7 })).toEqual({ event: "phase", data: { name: "training" } });
    expect(tuneEvent("eval", { prompt: "Who?", when: "after", text: "Quill" })?.data.when).toBe("after");
    expect(generateEvent("token", { text: "Hi" })).toEqual({ event: "token", data: { text: "Hi" } });
  });

  it("drops what does not have the shape it claims, and events it does not know", () => {
    expect(tuneEvent("progress", { ...progress, loss: "low" })).toBeNull();
    expect(tuneEvent("eval", { prompt: "Who?", when: "later", text: "" })).toBeNull();
    expect(tuneEvent("something-new", {})).toBeNull();
    expect(generateEvent("token", { text: 3 })).toBeNull();
  });
});
