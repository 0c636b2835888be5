import { join } from "node:path";
import { BRIDGE } from "../bridge/client.js";
import { html } from "../display/bundle.js";
import { escapeHtml } from "../display/format.js";
import { LiveDisplay } from "../display/live.js";
import { UsageError } from "../errors.js";
import type { BenchRow } from "../ane/bench-job.js";
import { runBench, workerStatus, type BenchOutcome } from "../ane/bench.js";
import { mlxBench } from "../ane/mlx-bench.js";
import { ANE_WORKER } from "../ane/client.js";
import { configsFrom, validateConfigs, validateForAne } from "../ane/configs.js";
import { MAX_WEIGHT_FILES } from "../ane/stack.js";
import { trainWithRestarts, type TrainPoint, type TrainSummary } from "../ane/train.js";
import { machineSummary } from "../ane/hardware.js";
import { benchFigure, benchTable, peakReferenceTable, peaksTable, trainFigure, trainReferenceTable, trainTable } from "../ane/views.js";
import { TINY_TRAIN_DEFAULTS } from "../ane/tiny-train.js";
import { defineMagic, flag, type MagicContext } from "./schema.js";

const benchFlags = {
  backend: flag.string({ help: "ane, cpu, mlx, or all side by side (default: the best available here)", choices: ["ane", "cpu", "mlx", "all"], metavar: "NAME" }),
  channels: flag.int({ help: "channels C of every 1x1 conv", default: 512, min: 1 }),
  spatial: flag.int({ help: "spatial positions S of the [1, C, 1, S] tensor (a multiple of 16 wherever the ANE runs)", default: 64, min: 1 }),
  depths: flag.list("int", { help: "stack depths D to measure", default: [32, 48, 64, 96, 128], min: 1, maxItems: 32 }),
  warmup: flag.int({ help: "untimed evaluations before timing", default: 10, min: 0, max: 10_000 }),
  iters: flag.int({ help: "timed evaluations per config", default: 50, min: 1, max: 100_000 }),
  configs: flag.string({ help: "'seed' runs the reference's full set of configs instead of --channels/--spatial/--depths", choices: ["seed"], metavar: "SET" }),
  seed: flag.int({ help: "random seed of the weights and inputs", default: 0, min: 0 }),
  compileBudget: flag.int({ help: "compiles a worker may do before it is replaced", default: 100, min: 1 }),
  weightFiles: flag.int({
    help: "weight files per ANE program, the layers split over them in order (maderix/ANE uses one; more is an experiment for chips that reject it)",
    default: 1,
    min: 1,
    max: MAX_WEIGHT_FILES,
    metavar: "N",
  }),
};

/** Whether a request may run on the ANE: named, or "all"/the default on a Mac with Apple silicon. */
function aneMayRun(backend: string | undefined): boolean {
  const appleSilicon = process.platform === "darwin" && process.arch === "arm64";
  return backend === "ane" || (appleSilicon && (backend === undefined || backend === "all"));
}

function progressLine(text: string) {
  return html(`<div style="font-family:monospace;opacity:0.8">${escapeHtml(text)}</div>`, text);
}

export const aneBenchMagic = defineMagic({
  name: "ane_bench",
  summary: "benchmark chained 1x1 convs on the Neural Engine, the cpu (cblas) or MLX, checked against float64",
  description:
    "Builds a stack of D 1x1 convolutions C -> C over a [1, C, 1, S] tensor for each depth, compiles it on each backend, " +
    "checks its output against a float64 reference on random inputs, then times --iters evaluations after --warmup. " +
    "Shows a table (weight MB, GFLOP per eval, median ms and spread, TFLOPS, share of the backend's peak measured in the " +
    "same run) and throughput against depth; with the ANE, the M4 Max figures of the reproduction write-up sit beside the measured ones. " +
    "A config that fails to compile, run or match the reference is a FAIL row saying why, and the next one runs. " +
    "The backends run in a separate worker process, so a crash there never takes the kernel down.",
  forms: { line: true, cell: false },
  flags: benchFlags,
  examples: ["%ane_bench --backend cpu --depths 32,64 --iters 10", "%ane_bench --backend all --configs seed"],
  async run({ args }, ctx) {
    const configs = configsFrom(args);
    validateConfigs(configs);
    if (aneMayRun(args.backend)) validateForAne(configs);
    const worker = ctx.services.get(ANE_WORKER);
    const progress = new LiveDisplay(ctx.io, { maxPerSecond: 4 });
    const rows: BenchRow[] = [];
    let current = "";
    const show = () => progress.update(() => progressLine(`${current}: ${rows.filter((r) => r.backend === current).length}/${configs.length} configs measured`));
    let outcome: BenchOutcome;
    try {
      outcome = await runBench(
        worker,
        { backend: args.backend as "ane" | "cpu" | "mlx" | "all" | undefined, configs, warmup: args.warmup, iters: args.iters, seed: args.seed, compileBudget: args.compileBudget, weightFiles: args.weightFiles },
        {
          signal: ctx.io.signal,
          mlx: mlxBench(() => ctx.services.get(BRIDGE), { runsDir: join(ctx.cwd, "runs") }),
          onBackend: (backend) => {
            current = backend;
            show();
          },
          onRow: (row) => {
            rows.push(row);
            show();
          },
        },
      );
    } catch (error) {
      if (rows.length > 0) {
        progress.close(benchTable({ rows, peaks: {}, unavailable: {}, blas: "" }, "Conv-stack throughput (partial)"));
      } else progress.close(progressLine("stopped"));
      throw error;
    }
    const notes = Object.entries(outcome.unavailable).map(([b, reason]) => `${b}: ${reason}`);
    const failed = outcome.rows.filter((r) => r.status === "failed").length;
    const measured = `measured ${outcome.rows.length - failed} configs${failed ? `, ${failed} failed (see the table)` : ""}`;
    progress.close(progressLine([`${measured}; BLAS: ${outcome.blas}`, ...notes].join(" · ")));
    if (outcome.rows.length > 0) {
      ctx.io.display(benchTable(outcome));
      ctx.io.display(peaksTable(outcome));
      const claimed = peakReferenceTable(outcome, machineSummary());
      if (claimed) ctx.io.display(claimed);
      ctx.io.display(benchFigure(outcome.rows, outcome.rows.some((r) => r.backend === "ane")));
    } else {
      ctx.io.display(peaksTable(outcome));
    }
    return outcome;
  },
});

const trainFlags = {
  steps: flag.int({ help: "training steps", default: TINY_TRAIN_DEFAULTS.steps, min: 1, max: 1_000_000 }),
  accum: flag.int({ help: "steps per batch: each batch's averaged gradient is one weight update", default: TINY_TRAIN_DEFAULTS.accum, min: 1 }),
  compileBudget: flag.int({
    help: "compiles a worker may do before it checkpoints and a fresh worker resumes (4 when it starts, 4 per iteration)",
    default: TINY_TRAIN_DEFAULTS.compileBudget,
    min: 8,
  }),
  lr: flag.number({ help: "SGD learning rate (the stale batch uses half)", default: TINY_TRAIN_DEFAULTS.lr, min: 0, exclusiveMin: true, metavar: "RATE" }),
  backend: flag.string({ help: "ane or cpu (default: the best available here)", choices: ["ane", "cpu"], metavar: "NAME" }),
  name: flag.string({ help: "run name: the checkpoint goes to runs/NAME/checkpoint.json (default: timestamped)", metavar: "NAME" }),
  resume: flag.boolean({ help: "continue the run --name from its checkpoint" }),
};

export interface AneTrainOutcome extends TrainSummary {
  backend: string;
  runDir: string;
}

export const aneTrainMagic = defineMagic({
  name: "ane_train",
  summary: "train maderix/ANE's tiny two-layer net on the Neural Engine (or cpu) with its schedule, surviving the compiler's limits",
  description:
    "maderix/ANE's tiny_train: x [16, 64] -> 128 -> ReLU -> 64 trained to reproduce its own fixed input, MSE, SGD. " +
    "The backend runs four kernels (W1, W2 forward; W2ᵀ, W1ᵀ backward) with the weights baked in, so each iteration " +
    "trains a batch, compiles the next kernels in the background while a second, stale batch trains on the old ones at " +
    "half the learning rate, then swaps them. When a worker reaches --compile-budget, or its compiler fails, it stops at " +
    "its checkpoint and a fresh worker resumes from it; the loss curve marks where. Ends with a summary table and the " +
    "reproduction write-up's figures beside this run's.",
  forms: { line: true, cell: false },
  flags: trainFlags,
  examples: ["%ane_train --backend cpu --steps 400 --compile-budget 20", "%ane_train"],
  async run({ args }, ctx) {
    if (args.resume && !args.name) throw new UsageError("--resume needs --name of the run to continue.");
    const name = args.name ?? `ane-train-${new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)}`;
    if (!/^[\w.-]+$/.test(name)) throw new UsageError(`--name must be letters, digits, '.', '-' or '_', got '${name}'.`);
    const worker = ctx.services.get(ANE_WORKER);
    const status = await workerStatus(worker);
    const backend = (args.backend ?? (status.backends.ane.available ? "ane" : "cpu")) as "ane" | "cpu";
    if (!status.backends[backend].available) {
      throw new UsageError(`The ${backend} backend is ${status.backends[backend].reason ?? "unavailable"}; use --backend cpu.`);
    }
    const runDir = join(ctx.cwd, "runs", name);
    const live = new LiveDisplay(ctx.io, { maxPerSecond: 2 });
    const losses: TrainPoint[] = [];
    const restarts: number[] = [];
    const render = () => trainFigure(losses, restarts, args.steps, true);
    let summary: TrainSummary;
    try {
      summary = await trainWithRestarts(
        worker,
        { steps: args.steps, accum: args.accum, lr: args.lr, backend, compileBudget: args.compileBudget, runDir, resume: args.resume },
        {
          signal: ctx.io.signal,
          onProgress: (p) => {
            losses.push(p);
            live.update(render);
          },
          onRestart: (step) => {
            restarts.push(step);
            // Steps after the checkpoint are recomputed by the fresh worker.
            losses.splice(0, losses.length, ...losses.filter((p) => p.step <= step));
            live.update(render);
          },
        },
      );
    } catch (error) {
      live.close(() => trainFigure(losses, restarts, args.steps));
      throw error;
    }
    live.close(() => trainFigure(summary.losses, summary.restartSteps, args.steps));
    ctx.io.display(trainTable(summary, backend));
    ctx.io.display(trainReferenceTable(summary, { steps: args.steps, lr: args.lr, accum: args.accum, compileBudget: args.compileBudget }, backend, machineSummary()));
    if (summary.status === "interrupted") {
      ctx.io.stderr(`Interrupted at step ${summary.steps}; continue with %ane_train --name ${name} --resume --steps ${args.steps}\n`);
    }
    const outcome: AneTrainOutcome = { ...summary, backend, runDir };
    return outcome;
  },
});

export const aneMagics = [aneBenchMagic, aneTrainMagic];
