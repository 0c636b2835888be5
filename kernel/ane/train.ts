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
  /** Steps at which a fresh worker took over (at the compile budget or after a failed compile). */
  restartSteps: number[];
  /** Compiles that failed, each survived by a fresh worker resuming from the checkpoint at `step`. */
  compileFailures: Array<{ step: number; message: string }>;
  compiles: number;
  compileMs: number;
  /** The part of compileMs that ran while a stale batch trained, so nobody waited for it. */
  hiddenCompileMs: number;
  trainMs: number;
  wallMs: number;
  batches: number;
  staleBatches: number;
  /** Backend GFLOP/s over the four kernels (2·H·D·S flops each per step), per second of training time. */
  gflops: number;
  checkpoint: string;
  losses: TrainPoint[];
}

export interface TrainHooks {
  onProgress?(point: TrainPoint & { steps: number }): void;
  /** A fresh worker resumes at `step`; progress reported for later steps is recomputed. */
  onRestart?(step: number, why: "budget" | "compile failed"): void;
  signal?: AbortSignal;
}

/**
 * Drives a training run across as many workers as it needs: a worker that reaches its compile
 * budget, or whose compiler fails, stops at its checkpoint, this replaces it, and the fresh one
 * resumes. A compile that fails again at the same step ends the run with the reason.
 */
export async function trainWithRestarts(worker: AneWorker, options: TrainOptions, hooks: TrainHooks = {}): Promise<TrainSummary> {
  const checkpoint = join(options.runDir, "checkpoint.json");
  let losses: TrainPoint[] = [];
  const restartSteps: number[] = [];
  const compileFailures: TrainSummary["compileFailures"] = [];
  const started = performance.now();
  let resume = options.resume ?? false;
  let startStep = resume ? (readCheckpoint(checkpoint)?.step ?? 0) : 0;
  let result: TrainJobResult;
  for (;;) {
    const params: TrainJobParams = {
      checkpoint,
      steps: options.steps,
      accum: options.accum,
      lr: options.lr,
      backend: options.backend,
      compileBudget: options.compileBudget,
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
    if (result.status === "compile_failed") {
      const message = result.error ?? "no reason given";
      if (compileFailures.some((f) => f.step === result.step)) {
        throw new UserFacingError(
          `Compiling the training kernels failed twice from the checkpoint at step ${result.step} (${message}); it is kept in ${checkpoint}: continue with --resume once the cause is gone.`,
          "CompileFailed",
        );
      }
      compileFailures.push({ step: result.step, message });
      losses = losses.filter((p) => p.step <= result.step);
      await restart(worker, result.step, "compile failed");
      continue;
    }
    if (result.status !== "budget") break;
    if (result.step === startStep) {
      throw new UserFacingError(
        `--compile-budget ${options.compileBudget} leaves a worker no room to train: it compiles ${KERNELS_PER_UPDATE} kernels when it starts and ${KERNELS_PER_UPDATE} more per iteration; use ${2 * KERNELS_PER_UPDATE} or more.`,
      );
    }
    await restart(worker, result.step, "budget");
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
    compileFailures,
    compiles: result.compiles,
    compileMs: result.compileMs,
    hiddenCompileMs: result.hiddenCompileMs,
    trainMs: result.trainMs,
    wallMs: performance.now() - started,
    batches: result.batches,
    staleBatches: result.staleBatches,
    gflops: result.trainMs > 0 ? flops / 1e6 / result.trainMs : 0,
    checkpoint,
    losses,
  };

  async function restart(w: AneWorker, step: number, why: "budget" | "compile failed"): Promise<void> {
    await w.restart();
    restartSteps.push(step);
    hooks.onRestart?.(step, why);
    resume = true;
    startStep = step;
  }
}

function reasonOf(error: Error): string {
  const match = /\(([^)]*)\)/.exec(error.message);
  return match?.[1] ?? error.message;
}
