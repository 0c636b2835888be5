import { formatDuration, formatNumber } from "../display/format.js";
import { table } from "../display/table.js";
import { text } from "../display/bundle.js";
import { bridgeFor, modelArg } from "./bridge-context.js";
import { SYNC_COST_FLAGS, syncCostParams } from "./options.generated.js";
import { defineMagic } from "./schema.js";

/** bench.sync_cost's result (python-bridge/tunelab_bridge/sync_bench.py). */
export interface SyncCost {
  ranks: number;
  model: string;
  lora: SyncMeasurement;
  full: SyncMeasurement;
  claim: { parameters: number; bytes: number; home_gbps: number; home_seconds: number; nvlink_seconds: number };
}

interface SyncMeasurement {
  parameters: number;
  bytes: number;
  seconds: number;
  gbps: number;
}

function bytes(n: number): string {
  return n >= 1e9 ? `${formatNumber(n / 1e9)} GB` : n >= 1e6 ? `${formatNumber(n / 1e6)} MB` : `${formatNumber(n / 1e3)} kB`;
}

function seconds(s: number): string {
  if (s < 1e-3) return `${formatNumber(s * 1e6)} µs`;
  return s < 1 ? `${formatNumber(s * 1000)} ms` : formatDuration(s);
}

/** Rows of the claimed-vs-measured table: each gradient set's bytes, measured here, and at both links. */
export function syncCostRows(r: SyncCost): Record<string, string>[] {
  // The write-up's NVLink figure is 40 GB in 22 ms; the same bandwidth for the other rows.
  const nvlink = r.claim.bytes / r.claim.nvlink_seconds;
  const at = (b: number, bandwidth: number) => seconds(b / bandwidth);
  const home = r.claim.home_gbps * 1e9;
  const measured = (m: SyncMeasurement, what: string) => ({
    gradients: what,
    parameters: formatNumber(m.parameters),
    "bytes per step": bytes(m.bytes),
    [`measured, ${r.ranks}-rank ring on loopback`]: `${seconds(m.seconds)} (${formatNumber(m.gbps)} GB/s)`,
    "at 0.026 GB/s (home link)": at(m.bytes, home),
    "on NVLink (the write-up's 1.8 TB/s)": at(m.bytes, nvlink),
    "the write-up claims": "",
  });
  return [
    measured(r.lora, `LoRA of ${r.model}`),
    measured(r.full, `all of ${r.model}`),
    {
      gradients: "all of a 10B model (the write-up's)",
      parameters: formatNumber(r.claim.parameters),
      "bytes per step": bytes(r.claim.bytes),
      [`measured, ${r.ranks}-rank ring on loopback`]: `${seconds(r.claim.bytes / (r.full.gbps * 1e9))} at the rate measured here`,
      "at 0.026 GB/s (home link)": at(r.claim.bytes, home),
      "on NVLink (the write-up's 1.8 TB/s)": at(r.claim.bytes, nvlink),
      "the write-up claims": `${seconds(r.claim.home_seconds)} at home, ${seconds(r.claim.nvlink_seconds)} on NVLink`,
    },
  ];
}

export const syncCostMagic = defineMagic({
  name: "sync_cost",
  summary: "measure what a data-parallel step costs to synchronise: LoRA vs full gradients, extrapolated to a home link and NVLink",
  description:
    "Starts a group of processes through mlx.launch (ring backend over loopback), all-reduces buffers the size of the model's " +
    "LoRA gradients and of its full gradients, and shows bytes and seconds per step next to the write-up's claim (a 10B model's " +
    "gradients: 26 minutes at 0.026 GB/s, 22 ms on NVLink), each extrapolated at both links.",
  forms: { line: true, cell: false },
  flags: SYNC_COST_FLAGS,
  examples: ["%sync_cost", "%sync_cost --processes 2 --reps 5"],
  async run({ args }, ctx) {
    const bridge = bridgeFor(ctx);
    const result = (await bridge.call("bench.sync_cost", { ...syncCostParams(args, { model: (v) => modelArg(v, ctx.cwd) }) }, { signal: ctx.io.signal })) as unknown as SyncCost;
    ctx.io.display(table(syncCostRows(result), { caption: `Gradient sync per step, measured on this machine (${result.ranks} processes)` }));
    const ratio = result.full.bytes / result.lora.bytes;
    ctx.io.display(text(`LoRA sends ${formatNumber(ratio)}x fewer bytes per step than the full model's gradients.`));
    return result;
  },
});
