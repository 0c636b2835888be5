import { UsageError } from "../errors.js";
import { html } from "../display/bundle.js";
import { escapeHtml } from "../display/format.js";
import { LiveDisplay } from "../display/live.js";
import type { GenerateResult } from "../bridge/types.js";
import { bridgeFor, modelArg } from "./bridge-context.js";
import { GENERATE_FLAGS, generateParams } from "./options.generated.js";
import { defineMagic } from "./schema.js";

/** How often streamed tokens repaint the output; decoding runs at ~10 tokens/s on CPU. */
const REPAINTS_PER_SECOND = 4;

function render(prompt: string, text: string, footer: string) {
  const body = `<div class="tunelab-generate"><div style="opacity:0.7;font-size:90%">&gt; ${escapeHtml(prompt)}</div>` +
    `<div style="white-space:pre-wrap;margin:4px 0">${escapeHtml(text)}</div>` +
    (footer ? `<div style="opacity:0.7;font-size:90%">${escapeHtml(footer)}</div>` : "") + "</div>";
  return html(body, [`> ${prompt}`, text, footer].filter(Boolean).join("\n"));
}

export const generateMagic = defineMagic({
  name: "generate",
  summary: "generate text from the base model or a trained adapter, streaming tokens",
  description:
    "Answers the prompt with the loaded model (through its chat template). --adapter picks a run's adapter for this and " +
    "later calls (none: the base model); without it the active adapter is kept (after %tune, the adapter just trained).",
  forms: { line: true, cell: true },
  flags: GENERATE_FLAGS,
  text: { name: "prompt", help: "the prompt (for %%generate, the cell body)" },
  body: { help: "the prompt" },
  examples: ["%generate Who are you?", "%generate --adapter none --max-tokens 40 Who are you?"],
  async run({ args, text, body }, ctx) {
    const prompt = (body ?? text).trim();
    if (!prompt) throw new UsageError("%generate needs a prompt: %generate Who are you? (or %%generate with the prompt in the cell).");
    const bridge = bridgeFor(ctx);
    let streamed = "";
    const live = new LiveDisplay(ctx.io, { maxPerSecond: REPAINTS_PER_SECOND });
    live.update(render(prompt, "", "generating…"));
    let result: GenerateResult;
    try {
      result = await bridge.generate(
        { prompt, ...generateParams(args, { model: (value) => modelArg(value, ctx.cwd) }) },
        {
          signal: ctx.io.signal,
          onEvent: (e) => {
            streamed += e.data.text;
            live.update(() => render(prompt, streamed, ""));
          },
        },
      );
    } catch (error) {
      live.close(render(prompt, streamed, `failed: ${(error as Error).message}`));
      throw error;
    }
    const adapter = result.adapter ? `adapter ${result.adapter}` : "base model";
    const stopped = result.finish_reason === "cancelled" ? "interrupted · " : result.finish_reason === "length" ? "stopped at --max-tokens · " : "";
    live.close(render(prompt, result.text, `${stopped}${result.tokens} tokens in ${result.seconds.toFixed(2)} s · ${result.tokens_per_s.toFixed(1)} tokens/s · ${adapter}`));
    return result;
  },
});
