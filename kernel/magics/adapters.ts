import { table } from "../display/table.js";
import { text } from "../display/bundle.js";
import type { AdapterList } from "../bridge/types.js";
import { defineMagic, flag } from "./schema.js";
import { bridgeFor } from "./bridge-context.js";

/** A switch as `%adapters --use` measured it: `ms` in the bridge, `round_trip_ms` as the kernel waited for it. */
export interface AdapterSwitch {
  active: string | null;
  ms: number;
  round_trip_ms: number;
}

/** What `%adapters` returns to TypeScript: the list, and with --use the switch it made. */
export interface AdaptersOutcome extends AdapterList {
  switched?: AdapterSwitch;
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
    "adapter the active one for later %generate calls (the base model stays loaded, so switching takes milliseconds); --use none goes back to the base model.",
  forms: { line: true, cell: false },
  flags: {
    use: flag.string({ help: "make this run's adapter active for %generate (none: the base model)", metavar: "NAME" }),
  },
  examples: ["%adapters", "%adapters --use identity", "%adapters --use none"],
  async run({ args }, ctx) {
    const bridge = bridgeFor(ctx);
    let switched: AdapterSwitch | undefined;
    if (args.use !== undefined) {
      const started = performance.now();
      const reply = await bridge.switchAdapter(args.use);
      switched = { ...reply, round_trip_ms: performance.now() - started };
      ctx.io.display(text(`active adapter: ${switched.active ?? "none (base model)"} (switched in ${switched.ms.toFixed(1)} ms)`));
    }
    const list: AdaptersOutcome = await bridge.listAdapters();
    if (switched) list.switched = switched;
    const shown = rows(list);
    ctx.io.display(
      shown.length === 0
        ? text("No adapters yet: train one with %tune --data FILE.jsonl --name NAME.")
        : table(shown, { caption: `Adapters (active: ${list.active ?? "none, base model"})` }),
    );
    return list;
  },
});
