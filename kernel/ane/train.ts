import { join } from "node:path";
import { InterruptedError, UserFacingError } from "../errors.js";
import { ChildGoneError } from "../rpc/client.js";
import type { AneWorker } from "./client.js";
import { readCheckpoint } from "./checkpoint.js";
import { KERNELS_PER_UPDATE, SHAPES, type TrainJobParams, type TrainJobResult } from "./train-job.js";

/** What one training job in a worker takes, less what the restart loop decides itself. */
export type TrainOptions = Omit<TrainJobParams, "checkpoint" | "resume"> & {
  /** Where checkpoint.json goes. */
  runDir: string;
  resume?: boolean;
};

export interface TrainPoint {
  step: number;
  loss: number;
}

export interface TrainSummary {
  status: "completed" | "interrupted";
  steps: number;
  firstLoss: number;
  finalLoss: number;
  restarts: number;
  /** Steps at which a fresh worker took over. */
  restartSteps: number[];
  compiles: number;
  compileMs: number;
  trainMs: number;
  wallMs: number;
  /** Backend GFLOP/s over the four kernels (2·H·D·S flops each per step). */
  gflops: number;
  checkpoint: string;
  losses: TrainPoint[];
}

export interface TrainHooks {
  onProgress?(point: TrainPoint & { steps: number }): void;
  onRestart?(step: number): void;
  signal?: AbortSignal;
}

/**
 * Drives a training run across as many workers as the compile budget needs: when a worker reaches
 * its budget it checkpoints, this replaces it, and the fresh one resumes from the checkpoint.
 */
export async function trainWithRestarts(worker: AneWorker, options: TrainOptions, hooks: TrainHooks = {}): Promise<TrainSummary> {
  const checkpoint = join(options.runDir, "checkpoint.json");
  const losses: TrainPoint[] = [];
  const restartSteps: number[] = [];
  const started = performance.now();
  let resume = options.resume ?? false;
  let result: TrainJobResult;
  for (;;) {
    const params: TrainJobParams = {
      checkpoint,
      steps: options.steps,
      accum: options.accum,
      lr: options.lr,
      backend: options.backend,
      compileBudget: options.compileBudget,
      seed: options.seed,
      resume,
    };
    try {
      result = (await worker.call("train", { ...params }, {
        signal: hooks.signal,
        onEvent: (event, data) => {
          if (event !== "progress") return;
          const point = { step: Number(data.step), loss: Number(data.loss) };
          losses.push(point);
          hooks.onProgress?.({ ...point, steps: options.steps });
        },
      })) as unknown as TrainJobResult;
    } catch (error) {
      if (error instanceof ChildGoneError) {
        const saved = readCheckpoint(checkpoint);
        const where = saved ? `the checkpoint at step ${saved.step} is kept in ${checkpoint}` : "no checkpoint was written yet";
        const at = losses.at(-1)?.step ?? 0;
        throw new UserFacingError(`The ANE worker crashed at step ${at} (${reasonOf(error)}); ${where}, and the next run starts a fresh worker.`, "WorkerCrashed");
      }
      throw error;
    }
    if (result.status !== "budget") break;
    if (result.workerCompiles === 0) {
      throw new UserFacingError(`--compile-budget ${options.compileBudget} is smaller than one weight update's 4 compiles; use 4 or more.`);
    }
    await worker.restart();
    restartSteps.push(result.step);
    hooks.onRestart?.(result.step);
    resume = true;
  }
  if (result.status === "interrupted" && losses.length === 0) throw new InterruptedError("Interrupted before the first step.");
  const { S, D, H } = SHAPES;
  const flops = KERNELS_PER_UPDATE * 2 * H * D * S * losses.length;
  return {
    status: result.status === "interrupted" ? "interrupted" : "completed",
    steps: result.step,
    firstLoss: losses[0]?.loss ?? NaN,
    finalLoss: result.loss,
    restarts: restartSteps.length,
    restartSteps,
    compiles: result.compiles,
    compileMs: result.compileMs,
    trainMs: result.trainMs,
    wallMs: performance.now() - started,
    gflops: result.trainMs > 0 ? flops / 1e6 / result.trainMs : 0,
    checkpoint,
    losses,
  };
}

function reasonOf(error: Error): string {
  const match = /\(([^)]*)\)/.exec(error.message);
  return match?.[1] ?? error.message;
}
