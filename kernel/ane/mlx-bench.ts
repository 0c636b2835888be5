import { existsSync } from "node:fs";
import type { BridgeClient } from "../bridge/client.js";
import { InterruptedError } from "../errors.js";
import { BRIDGE_PYTHON } from "../paths.js";
import { RemoteError } from "../rpc/client.js";
import type { BackendPeak, BenchRow } from "./bench-job.js";
import type { ExternalBench } from "./bench.js";

/** One `row` of the bridge's `bench.conv_stack` (docs/bridge-protocol.md). */
export interface BridgeBenchRow {
  backend: string;
  device: string;
  channels: number;
  spatial: number;
  depth: number;
  weight_mb: number;
  gflop: number;
  ms_median: number;
  ms_p10: number;
  ms_p90: number;
  tflops: number;
  max_rel_error: number;
  compiled: boolean;
  compile_ms?: number;
}

/** A bench row measured through MLX: which device, and whether mx.compile was the faster variant. */
export interface MlxBenchRow extends BenchRow {
  device: string;
  compiled: boolean;
}

export function fromBridgeRow(row: BridgeBenchRow): MlxBenchRow {
  return {
    backend: "mlx",
    status: "ok",
    channels: row.channels,
    spatial: row.spatial,
    depth: row.depth,
    weightMB: row.weight_mb,
    gflop: row.gflop,
    msMedian: row.ms_median,
    msP10: row.ms_p10,
    msP90: row.ms_p90,
    tflops: row.tflops,
    relError: row.max_rel_error,
    compileMs: row.compile_ms ?? NaN,
    device: row.device,
    compiled: row.compiled,
  };
}

const INTERRUPTED = "Interrupted; the rows measured so far are in the table above.";

export interface MlxBenchOptions {
  /** The bridge's interpreter; a local bridge needs it installed (a remote one does not). */
  python?: string;
  /** Where a bridge started by this call keeps runs/ (the notebook's). */
  runsDir?: string;
}

/**
 * `%ane_bench --backend mlx`: the same stacks through the MLX bridge's `bench.conv_stack`. The
 * bridge is looked up only when it is installed, so a machine without it just reports why.
 */
export function mlxBench(bridge: () => BridgeClient, options: MlxBenchOptions = {}): ExternalBench {
  return async (job, onRow, signal) => {
    const python = options.python ?? BRIDGE_PYTHON;
    const client = bridge();
    if (!client.remoteUrl && !client.running && !existsSync(python)) {
      return { unavailable: "unavailable: the MLX bridge is not installed; run npm run setup" };
    }
    if (options.runsDir && !client.running) client.setRunsDir(options.runsDir);
    const rows: MlxBenchRow[] = [];
    let result: Record<string, unknown>;
    try {
      result = await client.call("bench.conv_stack", { configs: job.configs, warmup: job.warmup, iters: job.iters, seed: job.seed }, {
        signal,
        onEvent: (event, data) => {
          if (event !== "row") return;
          const row = fromBridgeRow(data as unknown as BridgeBenchRow);
          rows.push(row);
          onRow(row);
        },
      });
    } catch (error) {
      if (signal?.aborted || (error instanceof RemoteError && error.code === "cancelled")) throw new InterruptedError(INTERRUPTED);
      if (error instanceof RemoteError && error.code === "bad_request" && /unknown method/.test(error.message)) {
        return { unavailable: "unavailable: this MLX bridge has no conv-stack benchmark (bench.conv_stack); run npm run setup to update it" };
      }
      return { unavailable: `unavailable: ${(error as Error).message}` };
    }
    const reported = result.peak as Partial<BackendPeak> | undefined;
    const variants = [...new Set(rows.map((r) => (r.compiled ? "mx.compile" : "eager")))].join("/");
    const peak: BackendPeak = {
      tflops: typeof reported?.tflops === "number" ? reported.tflops : NaN,
      how: `${reported?.how ?? "not reported"}${variants ? `; stacks ran ${variants}` : ""}`,
    };
    return { rows, peak };
  };
}
