import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AneWorker } from "../../kernel/ane/client.js";
import { readCheckpoint } from "../../kernel/ane/checkpoint.js";
import { trainWithRestarts, type TrainOptions } from "../../kernel/ane/train.js";
import { runBench } from "../../kernel/ane/bench.js";
import { ChildGoneError } from "../../kernel/rpc/client.js";
import { InterruptedError, UserFacingError } from "../../kernel/errors.js";
import { ensureWorkerBuilt } from "./built.js";

const base = mkdtempSync(join(tmpdir(), "tunelab-ane-"));
const options = (name: string, compileBudget: number): TrainOptions => ({ steps: 60, accum: 10, lr: 2, backend: "cpu", compileBudget, seed: 3, runDir: join(base, name) });

describe("ANE worker process", () => {
  let worker: AneWorker;
  beforeAll(() => {
    ensureWorkerBuilt();
    worker = new AneWorker();
  });
  afterAll(async () => {
    await worker?.dispose();
  });

  it("hosts the addon in its own process and says what it can run", async () => {
    const status = await worker.call("status");
    expect(status.pid).not.toBe(process.pid);
    expect(status.pid).toBe(worker.pid);
    expect(status.backends).toMatchObject({ cpu: { available: true } });
    if (process.platform !== "darwin") expect(status.backends).toMatchObject({ ane: { available: false, reason: `unavailable on ${process.platform}-${process.arch}` } });
  });

  it("runs in its own process group, so a notebook interrupt sent to the kernel's group never reaches it", async () => {
    await worker.call("ping");
    const groupOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[2]);
    if (process.platform === "linux") {
      expect(groupOf(worker.pid!)).toBe(worker.pid);
      expect(groupOf(worker.pid!)).not.toBe(groupOf(process.pid));
    }
  });

  it("restarting at a budget of 4 compiles follows the same loss trajectory as an unbounded run", async () => {
    const unbounded = await trainWithRestarts(worker, options("unbounded", 1_000_000));
    const startsBefore = worker.started;
    const restartMarks: number[] = [];
    const bounded = await trainWithRestarts(worker, options("bounded", 4), { onRestart: (s) => restartMarks.push(s) });
    expect(unbounded.restarts).toBe(0);
    // 60 steps, an update (4 compiles) every 10: each of 6 workers does one update.
    expect(bounded.restarts).toBe(5);
    expect(bounded.restartSteps).toEqual([10, 20, 30, 40, 50]);
    expect(restartMarks).toEqual(bounded.restartSteps);
    expect(worker.started - startsBefore).toBe(5);
    expect(bounded.compiles).toBe(24);
    expect(bounded.losses.map((p) => p.step)).toEqual(unbounded.losses.map((p) => p.step));
    bounded.losses.forEach((p, i) => expect(p.loss).toBeCloseTo(unbounded.losses[i]!.loss, 6));
    expect(bounded.finalLoss).toBeLessThan(bounded.firstLoss);
    const saved = readCheckpoint(bounded.checkpoint);
    expect(saved?.step).toBe(60);
    // Checkpoints are written atomically: no temporary file is left behind.
    expect(readdirSync(join(base, "bounded"))).toEqual(["checkpoint.json"]);
  });

  it("turns a crashed worker into a clear error, and the next call gets a fresh worker", async () => {
    const crashed = await worker.call("crash").catch((e: Error) => e);
    expect(crashed).toBeInstanceOf(ChildGoneError);
    expect((crashed as Error).message).toMatch(/ANE worker stopped while working \(killed by SIGABRT/);
    const status = await worker.call("ping");
    expect(status.pong).toBe(true);
  });

  it("names the step and the kept checkpoint when the worker dies during training", async () => {
    let killed = false;
    const error = await trainWithRestarts(worker, { ...options("killed", 1_000_000), steps: 1_000_000 }, {
      onProgress: (p) => {
        if (p.step === 25 && !killed) {
          killed = true;
          process.kill(worker.pid!, "SIGKILL");
        }
      },
    }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(UserFacingError);
    expect((error as Error).message).toMatch(/^The ANE worker crashed at step \d+ \(killed by SIGKILL\); the checkpoint at step \d+ is kept in .*checkpoint\.json, and the next run starts a fresh worker\.$/);
  });

  it("stops a training run at the next update boundary when cancelled", async () => {
    const controller = new AbortController();
    const summary = await trainWithRestarts(worker, { ...options("cancelled", 1_000_000), steps: 1_000_000 }, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.step === 15) controller.abort();
      },
    });
    expect(summary.status).toBe("interrupted");
    expect(summary.steps % 10).toBe(0);
    expect(summary.steps).toBeLessThan(1000);
    expect(readCheckpoint(summary.checkpoint)?.step).toBe(summary.steps);
  });

  it("an interrupt stops a long native timing loop at its next evaluation", async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 1500);
    const error = await runBench(
      worker,
      { backend: "cpu", configs: [{ channels: 256, spatial: 64, depth: 16 }], warmup: 0, iters: 1_000_000, seed: 0, compileBudget: 100 },
      { signal: controller.signal },
    ).catch((e: Error) => e);
    expect(error).toBeInstanceOf(InterruptedError);
    // A million evaluations would take far longer than this; the loop stopped when asked.
    expect(Date.now() - started).toBeLessThan(60_000);
    expect((await worker.call("ping")).pong).toBe(true);
  });

  it("benchmarks the cpu backend and reports the ANE as unavailable side by side", async () => {
    const outcome = await runBench(worker, { backend: "all", configs: [{ channels: 64, spatial: 16, depth: 2 }], warmup: 1, iters: 2, seed: 0, compileBudget: 100 });
    expect(outcome.rows.map((r) => r.backend)).toEqual(process.platform === "darwin" && process.arch === "arm64" ? ["ane", "cpu"] : ["cpu"]);
    expect(outcome.peaks.cpu?.tflops).toBeGreaterThan(0);
    if (process.platform !== "darwin") expect(outcome.unavailable.ane).toBe(`unavailable on ${process.platform}-${process.arch}`);
    expect(outcome.unavailable.mlx).toMatch(/^unavailable/);
    expect(existsSync(base)).toBe(true);
  });
});
