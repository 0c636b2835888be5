import { InterruptedError, UserFacingError } from "../errors.js";
import { ChildGoneError, RemoteError } from "../rpc/client.js";
import type { BackendName } from "./addon.js";
import { failedRow, type BackendPeak, type BenchJobResult, type BenchRow } from "./bench-job.js";
import type { AneWorker } from "./client.js";
import type { StackConfig } from "./configs.js";

export type BenchBackend = BackendName | "mlx";
export const BENCH_BACKENDS: readonly BenchBackend[] = ["ane", "cpu", "mlx"];

export interface BenchRequest {
  /** undefined: the best available; "all": every backend side by side. */
  backend: BenchBackend | "all" | undefined;
  configs: StackConfig[];
  warmup: number;
  iters: number;
  seed: number;
  compileBudget: number;
  /** Weight files per ANE program (default 1). */
  weightFiles?: number;
}

/** Runs the same conv stacks elsewhere (the MLX bridge); answers `unavailable` with a reason when it cannot. */
export type ExternalBench = (
  request: Omit<BenchRequest, "backend" | "compileBudget" | "weightFiles">,
  onRow: (row: BenchRow) => void,
  signal: AbortSignal | undefined,
) => Promise<{ rows: BenchRow[]; peak: BackendPeak } | { unavailable: string }>;

export interface BenchOutcome {
  rows: BenchRow[];
  peaks: Partial<Record<BenchBackend, BackendPeak>>;
  /** Backends that were asked for but cannot run here, with the reason. */
  unavailable: Partial<Record<BenchBackend, string>>;
  blas: string;
}

export interface BenchHooks {
  onRow?(row: BenchRow): void;
  onBackend?(backend: BenchBackend): void;
  signal?: AbortSignal;
  mlx?: ExternalBench;
}

interface WorkerStatus {
  blas: string;
  backends: Record<BackendName, { available: boolean; reason?: string; compiles: number }>;
}

export async function workerStatus(worker: AneWorker): Promise<WorkerStatus> {
  return (await worker.call("status")) as unknown as WorkerStatus;
}

/** Rows cross the worker's channel as JSON, where NaN becomes null: a failed row's timings are NaN again here. */
function revived(row: BenchRow): BenchRow {
  const numbers = ["weightMB", "gflop", "msMedian", "msP10", "msP90", "tflops", "relError", "compileMs"] as const;
  const copy = { ...row };
  for (const key of numbers) if (copy[key] === null) copy[key] = NaN;
  return copy;
}

/** Which backends a request means on this machine: "best" is the ANE where it exists, else the cpu. */
export function resolveBackends(requested: BenchRequest["backend"], aneAvailable: boolean): BenchBackend[] {
  if (requested === "all") return [...BENCH_BACKENDS];
  if (requested === undefined) return [aneAvailable ? "ane" : "cpu"];
  return [requested];
}

export async function runBench(worker: AneWorker, request: BenchRequest, hooks: BenchHooks = {}): Promise<BenchOutcome> {
  let status = await workerStatus(worker);
  const backends = resolveBackends(request.backend, status.backends.ane.available);
  const outcome: BenchOutcome = { rows: [], peaks: {}, unavailable: {}, blas: status.blas };
  const job = { configs: request.configs, warmup: request.warmup, iters: request.iters, seed: request.seed };
  for (const backend of backends) {
    if (hooks.signal?.aborted) throw new InterruptedError("Interrupted; the rows measured so far are in the table above.");
    hooks.onBackend?.(backend);
    const onRow = (row: BenchRow) => {
      outcome.rows.push(row);
      hooks.onRow?.(row);
    };
    if (backend === "mlx") {
      const result = hooks.mlx ? await hooks.mlx(job, onRow, hooks.signal) : { unavailable: "unavailable: no MLX bridge in this session" };
      if ("unavailable" in result) outcome.unavailable.mlx = result.unavailable;
      else outcome.peaks.mlx = result.peak;
      continue;
    }
    const state = status.backends[backend];
    if (!state.available) {
      if (request.backend === backend) {
        throw new UserFacingError(`The ${backend} backend is ${state.reason ?? "unavailable"}; use --backend cpu, or --backend all to compare what this machine has.`);
      }
      outcome.unavailable[backend] = state.reason ?? "unavailable";
      continue;
    }
    // Each config is one compile; a worker near its budget is replaced before it starts leaking.
    if (state.compiles + request.configs.length > request.compileBudget) {
      await worker.restart();
      status = await workerStatus(worker);
    }
    let next = 0;
    while (next < request.configs.length) {
      try {
        const params = { backend, ...job, configs: request.configs.slice(next), firstIndex: next, weightFiles: request.weightFiles ?? 1 };
        const result = (await worker.call("bench", params, {
          signal: hooks.signal,
          onEvent: (event, data) => {
            if (event !== "row") return;
            onRow(revived(data.row as BenchRow));
            next = Number(data.index) + 1;
          },
        })) as unknown as BenchJobResult;
        outcome.peaks[backend] = { ...result.peak, tflops: result.peak.tflops ?? NaN };
        outcome.blas = result.blas;
        break;
      } catch (error) {
        if (error instanceof RemoteError && error.code === "cancelled") {
          throw new InterruptedError("Interrupted; the rows measured so far are in the table above.");
        }
        if (!(error instanceof ChildGoneError)) throw error;
        // A crash inside the framework takes the worker with it: that config failed, and a fresh
        // worker (started by the next call) goes on with the rest.
        const why = /\(([^)]*)\)/.exec(error.message)?.[1] ?? error.message;
        onRow(failedRow(backend, request.configs[next]!, `the worker crashed on this config (${why}); a fresh worker ran the rest`));
        next += 1;
      }
    }
    status = await workerStatus(worker);
  }
  return outcome;
}
