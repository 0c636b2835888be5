import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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
const options = (name: string, compileBudget: number): TrainOptions => ({ steps: 60, accum: 10, lr: 1, backend: "cpu", compileBudget, runDir: join(base, name) });

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

  it("restarting at the smallest budget (8 compiles) follows the same loss trajectory as an unbounded run", async () => {
    const unbounded = await trainWithRestarts(worker, options("unbounded", 1_000_000));
    const startsBefore = worker.started;
    const restartMarks: number[] = [];
    const bounded = await trainWithRestarts(worker, options("bounded", 8), { onRestart: (s) => restartMarks.push(s) });
    expect(unbounded.restarts).toBe(0);
    // A worker compiles 4 kernels when it starts and 4 per 20-step iteration: each of 3 workers does one iteration.
    expect(bounded.restarts).toBe(2);
    expect(bounded.restartSteps).toEqual([20, 40]);
    expect(restartMarks).toEqual(bounded.restartSteps);
    expect(worker.started - startsBefore).toBe(2);
    expect(bounded.compiles).toBe(24);
    expect(unbounded.compiles).toBe(16);
    expect(bounded.losses.map((p) => p.step)).toEqual(unbounded.losses.map((p) => p.step));
    bounded.losses.forEach((p, i) => expect(p.loss).toBe(unbounded.losses[i]!.loss));
    expect(bounded.finalLoss).toBeLessThan(bounded.firstLoss);
    const saved = readCheckpoint(bounded.checkpoint);
    expect(saved?.step).toBe(60);
    // Checkpoints are written atomically: no temporary file is left behind.
    expect(readdirSync(join(base, "bounded"))).toEqual(["checkpoint.json"]);
  });

  it("survives a compile that fails once: checkpoint, fresh worker, resume, and the same trajectory", async () => {
    const token = join(base, "fail-once");
    writeFileSync(token, "");
    // Compile 10 of the first worker is the second iteration's background compile (steps 30-40).
    const failing = new AneWorker({ env: { TUNELAB_CPU_FAIL_COMPILE: `10:${token}` } });
    try {
      const restarted: Array<[number, string]> = [];
      const summary = await trainWithRestarts(failing, options("fails-once", 1_000_000), { onRestart: (s, why) => restarted.push([s, why]) });
      const unbounded = await trainWithRestarts(worker, options("unbounded-2", 1_000_000));
      expect(existsSync(token)).toBe(false);
      expect(restarted).toEqual([[20, "compile failed"]]);
      expect(summary.compileFailures).toEqual([{ step: 20, message: expect.stringMatching(/compile 10 of this process failed \(injected by TUNELAB_CPU_FAIL_COMPILE\)/) }]);
      expect(summary.status).toBe("completed");
      expect(summary.losses.map((p) => p.step)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      summary.losses.forEach((p, i) => expect(p.loss).toBe(unbounded.losses[i]!.loss));
      expect(failing.started).toBe(2);
    } finally {
      await failing.dispose();
    }
  });

  it("gives up with the reason when the compile fails again from the same checkpoint", async () => {
    const failing = new AneWorker({ env: { TUNELAB_CPU_FAIL_COMPILE: "6" } });
    try {
      const error = await trainWithRestarts(failing, options("fails-always", 1_000_000)).catch((e: Error) => e);
      expect(error).toBeInstanceOf(UserFacingError);
      expect((error as Error).message).toMatch(
        /^Compiling the training kernels failed twice from the checkpoint at step 0 \(compile 6 of this process failed \(injected by TUNELAB_CPU_FAIL_COMPILE\)\); it is kept in .*checkpoint\.json: continue with --resume once the cause is gone\.$/,
      );
    } finally {
      await failing.dispose();
    }
  });

  it("a crash on one benchmark config is that config's FAIL row; a fresh worker measures the rest", async () => {
    const rows: Array<[number, string]> = [];
    let crashed = false;
    const outcome = await runBench(
      worker,
      { backend: "cpu", configs: [{ channels: 32, spatial: 16, depth: 1 }, { channels: 512, spatial: 64, depth: 16 }, { channels: 48, spatial: 16, depth: 2 }], warmup: 0, iters: 400, seed: 0, compileBudget: 100 },
      {
        onRow: (row) => {
          rows.push([row.channels, row.status]);
          if (!crashed) {
            crashed = true;
            void worker.call("crash").catch(() => undefined);
          }
        },
      },
    );
    expect(rows).toEqual([[32, "ok"], [512, "failed"], [48, "ok"]]);
    expect(outcome.rows[1]!.error).toMatch(/^the worker crashed on this config \(killed by SIGABRT/);
    expect(outcome.rows[1]!.tflops).toBeNaN();
    expect(outcome.peaks.cpu?.tflops).toBeGreaterThan(0);
  });

  it("turns a crashed worker into a clear error, and the next call gets a fresh worker", async () => {
    const crashed = await worker.call("crash").catch((e: Error) => e);
    expect(crashed).toBeInstanceOf(ChildGoneError);
    expect((crashed as Error).message).toMatch(/ANE worker stopped while working \(killed by SIGABRT/);
    const status = await worker.call("ping");
    expect(status.pong).toBe(true);
  });

  it("names the native addon, not just the signal, when the worker dies of an illegal instruction", async () => {
    await worker.call("ping");
    const pending = worker.call("bench", { backend: "cpu", configs: [{ channels: 512, spatial: 64, depth: 16 }], warmup: 0, iters: 100000, seed: 0 });
    setTimeout(() => process.kill(worker.pid!, "SIGILL"), 300);
    const error = await pending.catch((e: Error) => e);
    expect(error).toBeInstanceOf(ChildGoneError);
    expect((error as Error).message).toMatch(/ANE worker stopped while working \(the worker hit an illegal instruction \(SIGILL\).* in the native addon \(.*tunelab_native\.node\)/);
    expect((error as Error).message).not.toMatch(/killed by SIGILL/);
    expect((await worker.call("ping")).pong).toBe(true);
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
