import { InterruptedError, UserFacingError } from "../errors.js";
import { RemoteError } from "../rpc/client.js";
import type { BackendName } from "./addon.js";
import type { BackendPeak, BenchJobResult, BenchRow } from "./bench-job.js";
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
}

/** Runs the same conv stacks elsewhere (the MLX bridge); answers `unavailable` with a reason when it cannot. */
export type ExternalBench = (
  request: Omit<BenchRequest, "backend" | "compileBudget">,
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
    try {
      const result = (await worker.call("bench", { backend, ...job }, {
        signal: hooks.signal,
        onEvent: (event, data) => {
          if (event === "row") onRow(data.row as BenchRow);
        },
      })) as unknown as BenchJobResult;
      outcome.peaks[backend] = result.peak;
      outcome.blas = result.blas;
    } catch (error) {
      if (error instanceof RemoteError && error.code === "cancelled") {
        throw new InterruptedError("Interrupted; the rows measured so far are in the table above.");
      }
      throw error;
    }
    status = await workerStatus(worker);
  }
  return outcome;
}
