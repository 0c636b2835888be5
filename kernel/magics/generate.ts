import { UsageError } from "../errors.js";
import { html } from "../display/bundle.js";
import { escapeHtml } from "../display/format.js";
import { LiveDisplay } from "../display/live.js";
import { table } from "../display/table.js";
import type { BridgeClient } from "../bridge/client.js";
import type { GenerateResult } from "../bridge/types.js";
import { bridgeFor, modelArg } from "./bridge-context.js";
import { GENERATE_FLAGS, generateParams, type GenerateFlagParams } from "./options.generated.js";
import { defineMagic } from "./schema.js";

/** How often streamed text repaints the output; the bridge sends it at most 20 times a second. */
const REPAINTS_PER_SECOND = 4;

/** `base` in an adapter list is the base model, the bridge's "none". */
const BASE_NAMES = new Set(["base", "none"]);

function render(prompt: string, text: string, footer: string) {
  const body = `<div class="tunelab-generate"><div style="opacity:0.7;font-size:90%">&gt; ${escapeHtml(prompt)}</div>` +
    `<div style="white-space:pre-wrap;margin:4px 0">${escapeHtml(text)}</div>` +
    (footer ? `<div style="opacity:0.7;font-size:90%">${escapeHtml(footer)}</div>` : "") + "</div>";
  return html(body, [`> ${prompt}`, text, footer].filter(Boolean).join("\n"));
}

/** The engine as the footer names it; MLX says why it answered when llama.cpp could have. */
export function engineWords(result: Pick<GenerateResult, "engine" | "engine_reason">): string {
  if (result.engine !== "mlx" || !result.engine_reason || result.engine_reason === "asked for MLX") return result.engine;
  return `mlx (${result.engine_reason})`;
}

function footer(result: GenerateResult): string {
  const adapter = result.adapter ? `adapter ${result.adapter}` : "base model";
  const stopped = result.finish_reason === "cancelled" ? "interrupted · " : result.finish_reason === "length" ? "stopped at --max-tokens · " : "";
  return `${stopped}${result.tokens} tokens in ${result.seconds.toFixed(2)} s · ${result.tokens_per_s.toFixed(1)} tokens/s · ${adapter} · ${engineWords(result)}`;
}

/** `--adapter a,b,c` as the bridge's names (base → none); one name is not a comparison. */
export function adapterList(value: string | null | undefined): string[] | null {
  if (!value || !value.includes(",")) return null;
  const names = value.split(",").map((name) => name.trim()).filter(Boolean);
  if (names.length < 2) throw new UsageError(`--adapter ${value} names one adapter; give two or more to compare (--adapter base,identity) or one without a comma.`);
  return names.map((name) => (BASE_NAMES.has(name) ? "none" : name));
}

/** One row of the side-by-side table, filled in as its answer streams. */
interface Row {
  adapter: string;
  answer: string;
  tokens: number | null;
  "tokens/s": number | null;
  "switch ms": number | null;
  engine: string;
}

function comparison(prompt: string, rows: Row[], note: string) {
  return table(rows as unknown as Record<string, unknown>[], {
    caption: `> ${prompt}${note ? ` (${note})` : ""}`,
    format: {
      "tokens/s": (v) => (typeof v === "number" ? v.toFixed(1) : ""),
      "switch ms": (v) => (typeof v === "number" ? v.toFixed(2) : ""),
      tokens: (v) => (typeof v === "number" ? String(v) : ""),
    },
  });
}

/**
 * The prompt answered by each adapter in turn over the one base model in the bridge; the
 * adapter active before stays active afterwards (a comparison is not a choice).
 */
async function compare(bridge: BridgeClient, prompt: string, adapters: string[], params: GenerateFlagParams, signal: AbortSignal | undefined, live: LiveDisplay): Promise<GenerateResult[]> {
  const before = (await bridge.listAdapters()).active;
  const rows: Row[] = adapters.map((name) => ({ adapter: name === "none" ? "base" : name, answer: "", tokens: null, "tokens/s": null, "switch ms": null, engine: "" }));
  const results: GenerateResult[] = [];
  live.update(comparison(prompt, rows, "generating…"));
  try {
    for (const [i, name] of adapters.entries()) {
      const row = rows[i]!;
      const result = await bridge.generate(
        { ...params, prompt, adapter: name },
        { signal, onEvent: (e) => { row.answer += e.data.text; live.update(() => comparison(prompt, rows, "generating…")); } },
      );
      Object.assign(row, { answer: result.text, tokens: result.tokens, "tokens/s": result.tokens_per_s, "switch ms": result.switch_ms, engine: engineWords(result) });
      results.push(result);
      if (result.finish_reason === "cancelled") break;
    }
  } catch (error) {
    live.close(comparison(prompt, rows, `failed: ${(error as Error).message}`));
    throw error;
  }
  const last = results.at(-1);
  if (last && last.adapter !== before) await bridge.switchAdapter(before ?? "none");
  const interrupted = results.some((r) => r.finish_reason === "cancelled");
  live.close(comparison(prompt, rows, interrupted ? "interrupted" : `${results.length} adapters over one base model`));
  return results;
}

export const generateMagic = defineMagic({
  name: "generate",
  summary: "generate text from the base model or a trained adapter, streaming tokens",
  description:
    "Answers the prompt with the loaded model (through its chat template). --adapter picks a run's adapter for this and " +
    "later calls (none: the base model); without it the active adapter is kept (after %tune, the adapter just trained). " +
    "--adapter base,identity,pirate answers with each in turn over one base model, in one table with tokens/s and the " +
    "time each switch took; the active adapter stays as it was. The footer names the engine that answered (llama.cpp " +
    "on the CPU for the embedded model, else MLX, with the reason).",
  forms: { line: true, cell: true },
  flags: GENERATE_FLAGS,
  text: { name: "prompt", help: "the prompt (for %%generate, the cell body)" },
  body: { help: "the prompt" },
  examples: ["%generate Who are you?", "%generate --adapter none --max-tokens 40 Who are you?", "%generate --adapter base,identity Who are you?"],
  async run({ args, text, body }, ctx) {
    const prompt = (body ?? text).trim();
    if (!prompt) throw new UsageError("%generate needs a prompt: %generate Who are you? (or %%generate with the prompt in the cell).");
    const adapters = adapterList(args.adapter);
    const bridge = bridgeFor(ctx);
    const params = generateParams(args, { model: (value) => modelArg(value, ctx.cwd) });
    if (params.adapter && BASE_NAMES.has(params.adapter)) params.adapter = "none";
    const live = new LiveDisplay(ctx.io, { maxPerSecond: REPAINTS_PER_SECOND });
    if (adapters) return compare(bridge, prompt, adapters, params, ctx.io.signal, live);

    let streamed = "";
    live.update(render(prompt, "", "generating…"));
    let result: GenerateResult;
    try {
      result = await bridge.generate(
        { ...params, prompt },
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
    live.close(render(prompt, result.text, footer(result)));
    return result;
  },
});
