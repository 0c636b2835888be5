import { table } from "../display/table.js";
import { text } from "../display/bundle.js";
import { resolve } from "node:path";
import { UsageError } from "../errors.js";
import type { AdapterExport, AdapterList } from "../bridge/types.js";
import { defineMagic, flag } from "./schema.js";
import { bridgeFor } from "./bridge-context.js";
import { ADAPTERS_EXPORT_FLAGS, adaptersExportParams } from "./options.generated.js";

/** A switch as `%adapters --use` measured it: `ms` in the bridge, `round_trip_ms` as the kernel waited for it. */
export interface AdapterSwitch {
  active: string | null;
  ms: number;
  round_trip_ms: number;
}

/** What `%adapters` returns to TypeScript: the list, with --use the switch it made, with --export what it wrote. */
export interface AdaptersOutcome extends AdapterList {
  switched?: AdapterSwitch;
  exported?: AdapterExport;
}

/** Where each export goes next, in one line. */
const USE_EXPORT: Record<AdapterExport["format"], (path: string) => string> = {
  gguf: (path) => `llama.cpp: llama-cli -m BASE.gguf --lora ${path}; Ollama: ADAPTER ${path} in a Modelfile`,
  peft: (path) => `PEFT: PeftModel.from_pretrained(base_model, "${path}")`,
  mlx: (path) => `mlx-lm: mlx_lm.generate --model BASE --adapter-path ${path}`,
};

function exportedText(e: AdapterExport): string {
  const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} kB`;
  const files = e.files.map((f) => `  ${f.name}  ${kb(f.bytes)}`).join("\n");
  return `exported ${e.name} as ${e.format}: ${e.path}\n${files}\n${USE_EXPORT[e.format](e.path)}`;
}

function rows(list: AdapterList): Record<string, unknown>[] {
  const loaded = new Set(list.loaded);
  const names = new Set([...list.runs.map((r) => r.name), ...list.loaded]);
  return [...names].map((name) => {
    const run = list.runs.find((r) => r.name === name);
    const modified = typeof run?.modified === "number" ? new Date(run.modified * 1000).toISOString().replace("T", " ").slice(0, 16) : "";
    return {
      name,
      active: name === list.active ? "yes" : "",
      loaded: loaded.has(name) ? "yes" : "",
      status: run?.status ?? "",
      steps: run?.steps ?? null,
      iters: run?.iters ?? null,
      last_loss: run?.last_loss ?? null,
      model: run?.model ?? "",
      modified,
      path: run?.path ?? "",
    };
  });
}

export const adaptersMagic = defineMagic({
  name: "adapters",
  summary: "list trained adapters (runs/) and switch the one %generate uses",
  description:
    "Without flags: a table of the runs under runs/ and the adapters the bridge holds in memory. --use NAME makes a run's " +
    "adapter the active one for later %generate calls (the base model stays loaded, so switching takes milliseconds); --use none goes back to the base model. " +
    "--export NAME writes a run's adapter for another engine: --format gguf (llama.cpp, Ollama's ADAPTER; the default), peft (Hugging Face PEFT) or mlx (mlx-lm), into the run's directory or --to PATH.",
  forms: { line: true, cell: false },
  flags: {
    use: flag.string({ help: "make this run's adapter active for %generate (none: the base model)", metavar: "NAME" }),
    ...ADAPTERS_EXPORT_FLAGS,
  },
  examples: ["%adapters", "%adapters --use identity", "%adapters --use none", "%adapters --export identity --format gguf --to identity.gguf", "%adapters --export identity --format peft --to identity-peft"],
  async run({ args }, ctx) {
    if (args.export === undefined && (args.format !== undefined || args.to !== undefined))
      throw new UsageError(`--${args.format !== undefined ? "format" : "to"} goes with --export NAME: %adapters --export identity --format gguf.`);
    const bridge = bridgeFor(ctx);
    let exported: AdapterExport | undefined;
    if (args.export !== undefined) {
      exported = await bridge.exportAdapter(adaptersExportParams(args, { path: (value) => (value ? resolve(ctx.cwd, value) : null) }), { signal: ctx.io.signal });
      ctx.io.display(text(exportedText(exported)));
    }
    let switched: AdapterSwitch | undefined;
    if (args.use !== undefined) {
      const started = performance.now();
      const reply = await bridge.switchAdapter(args.use);
      switched = { ...reply, round_trip_ms: performance.now() - started };
      ctx.io.display(text(`active adapter: ${switched.active ?? "none (base model)"} (switched in ${switched.ms.toFixed(1)} ms)`));
    }
    const list: AdaptersOutcome = await bridge.listAdapters();
    if (switched) list.switched = switched;
    if (exported) list.exported = exported;
    const shown = rows(list);
    ctx.io.display(
      shown.length === 0
        ? text("No adapters yet: train one with %tune --data FILE.jsonl --name NAME.")
        : table(shown, { caption: `Adapters (active: ${list.active ?? "none, base model"})` }),
    );
    return list;
  },
});
