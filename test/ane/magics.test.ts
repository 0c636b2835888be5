import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import { arch, cpus, platform, tmpdir } from "node:os";
import { join } from "node:path";
import { MagicRegistry } from "../../kernel/magics/registry.js";
import { MAGICS } from "../../kernel/magics/index.js";
import type { MagicContext } from "../../kernel/magics/schema.js";
import { Services, type Disposable, type ServiceKey } from "../../kernel/session/services.js";
import { UsageError } from "../../kernel/errors.js";
import { PLOTLY_MIME } from "../../kernel/display/figure.js";
import type { BenchOutcome } from "../../kernel/ane/bench.js";
import type { AneTrainOutcome } from "../../kernel/magics/ane.js";
import { RecordingIO } from "../display/fake-io.js";
import { ensureWorkerBuilt } from "./built.js";

const registry = new MagicRegistry(MAGICS);

/** Services that record which long-lived helpers a magic asked for. */
class WatchedServices extends Services {
  readonly asked: string[] = [];
  override get<T extends Disposable>(key: ServiceKey<T>): T {
    this.asked.push(key.name);
    return super.get(key);
  }
}

async function magic(source: string, services: Services, cwd: string, io = new RecordingIO()) {
  const [segment] = registry.parseCell(source);
  if (!segment || segment.kind === "code") throw new Error(`not a magic: ${source}`);
  const ctx: MagicContext = { io, services, cwd, evaluate: async () => undefined };
  return { value: (await registry.run(segment, ctx)).value, io };
}

describe("%ane_bench and %ane_train usage errors", () => {
  const services = new WatchedServices();
  const cwd = mkdtempSync(join(tmpdir(), "tunelab-ane-magic-"));
  const bad: Array<[string, RegExp]> = [
    ["%ane_bench --channels 0", /--channels/],
    ["%ane_bench --spatial -64", /--spatial/],
    ["%ane_bench --depths 32,0,64", /--depths/],
    ["%ane_bench --depths 32,-8", /--depths/],
    ["%ane_bench --backend tpu", /--backend/],
    ["%ane_bench --iters 0", /--iters/],
    ["%ane_bench --depths 100000", /--depths must be at most 4096, got 100000/],
    ["%ane_bench --channels 8192 --depths 4096", /needs about 2048\.\d GiB of weights, over this machine's budget of .* GiB; use smaller --depths or --channels\./],
    ["%ane_bench --configs everything", /--configs/],
    ["%ane_train --steps 0", /--steps/],
    ["%ane_train --compile-budget 2", /--compile-budget/],
    ["%ane_train --lr -1", /--lr/],
    ["%ane_train --backend gpu", /--backend/],
    ["%ane_train --resume", /--resume needs --name/],
    ["%ane_train --compile-budget 4", /--compile-budget/],
    ["%ane_train --seed 3", /--seed/],
    ["%ane_bench --backend ane --spatial 20", /^--spatial must be a multiple of 16 for the ANE \(each row of its \[1, C, 1, S\] fp32 tensor must be a multiple of 64 bytes\), got 20; use --spatial 16 or 32, or --backend cpu\.$/],
    ["%ane_bench --backend ane --spatial 8", /got 8; use --spatial 16, or --backend cpu\.$/],
    ["%ane_bench --weight-files 17", /--weight-files/],
  ];
  for (const [line, pattern] of bad) {
    it(`${line} is a usage error before anything is allocated`, async () => {
      const error = await magic(line, services, cwd).then(() => new Error("expected a usage error"), (e: Error) => e);
      expect(error).toBeInstanceOf(UsageError);
      expect(error.message).toMatch(pattern);
      expect(error.message).not.toMatch(/\n/);
      expect(services.asked).toEqual([]);
    });
  }
});

describe("%ane_bench and %ane_train through the magic system", () => {
  const services = new Services();
  const cwd = mkdtempSync(join(tmpdir(), "tunelab-ane-magic-"));
  beforeAll(() => ensureWorkerBuilt());
  afterAll(() => services.disposeAll());

  it("%ane_bench --backend cpu shows a checked table, the peaks and a throughput chart", async () => {
    const { value, io } = await magic("%ane_bench --backend cpu --channels 128 --spatial 32 --depths 2,4 --warmup 1 --iters 3", services, cwd);
    const outcome = value as BenchOutcome;
    expect(outcome.rows.map((r) => [r.backend, r.depth])).toEqual([["cpu", 2], ["cpu", 4]]);
    for (const r of outcome.rows) expect(r.relError).toBeLessThan(1e-4);
    const shown = io.displays();
    const tableText = shown.map((d) => String(d.data["text/plain"])).find((t) => t.includes("Conv-stack throughput"));
    expect(tableText).toMatch(/backend +config +weight MB +GFLOP\/eval +ms\/eval +spread ms \(p10–p90\) +TFLOPS +% of peak +rel\. error/);
    expect(tableText).toContain("2x conv 128ch sp32");
    expect(shown.some((d) => String(d.data["text/plain"]).includes("sgemm 2048²"))).toBe(true);
    const chart = shown.find((d) => PLOTLY_MIME in d.data);
    expect((chart?.data[PLOTLY_MIME] as { data: Array<{ name: string; x: number[] }> }).data[0]).toMatchObject({ name: "cpu 128ch", x: [2, 4] });
  });

  it("%ane_bench puts the write-up's M4 Max figures beside the same shapes measured here, naming this machine", async () => {
    const { value, io } = await magic("%ane_bench --backend cpu --channels 512 --spatial 64 --depths 32 --warmup 1 --iters 2", services, cwd);
    const row = (value as BenchOutcome).rows[0]!;
    const texts = io.displays().map((d) => String(d.data["text/plain"]));
    expect(texts.some((t) => t.includes("Peak benchmark: claimed"))).toBe(true);
    const claimed = texts.find((t) => t.includes("Peak benchmark: claimed"))!;
    expect(claimed).toContain(`on ${cpus()[0]!.model.trim().replace(/\s+/g, " ")} (${platform()} ${arch()}, ${cpus().length} logical CPUs)`);
    expect(claimed).toMatch(/32x conv 512ch sp64 +0\.155 ms, 6\.92 TFLOPS/);
    expect(claimed).toContain(`${row.tflops.toPrecision(3)} TFLOPS (cpu)`);
    expect(claimed).toMatch(/deepest stack, share of peak +11\.34 of ~19 TFLOPS \(quoted fp16 peak\): 60% +32x: /);
    // Shapes the write-up did not measure get no such table.
    const small = await magic("%ane_bench --backend cpu --channels 128 --spatial 32 --depths 2 --warmup 1 --iters 2", services, cwd);
    expect(small.io.displays().some((d) => String(d.data["text/plain"]).includes("Peak benchmark: claimed"))).toBe(false);
  });

  it("%ane_train draws a live curve with restart markers and ends with a summary table", async () => {
    const { value, io } = await magic("%ane_train --backend cpu --steps 40 --compile-budget 8 --name tiny", services, cwd);
    const outcome = value as AneTrainOutcome;
    expect(outcome.restartSteps).toEqual([20]);
    expect(outcome.runDir).toBe(join(cwd, "runs", "tiny"));
    const figures = io.displays().filter((d) => PLOTLY_MIME in d.data);
    const last = figures.at(-1)!.data[PLOTLY_MIME] as { data: Array<{ name: string; x: number[] }> };
    expect(last.data.find((t) => t.name === "worker restarted")?.x).toEqual([20]);
    expect(last.data.find((t) => t.name === "loss")?.x).toHaveLength(40);
    const texts = io.displays().map((d) => String(d.data["text/plain"]));
    const summary = texts.find((t) => t.includes("%ane_train summary"));
    expect(summary).toMatch(/steps +first loss +final loss +restarts +compiles +compile s +train s/);
    const claimed = texts.find((t) => t.includes("tiny_train: claimed"))!;
    expect(claimed).toContain("claimed (reproduction write-up (project brief), ANE) against measured; this run's steps 40, compileBudget 8 differ");
    expect(claimed).toContain(`; measured with the cpu backend on ${cpus()[0]!.model.trim().replace(/\s+/g, " ")}`);
    expect(claimed).toMatch(/loss at step 1 +0\.5009 +0\.5009/);
    expect(claimed).toMatch(/restarts at steps +~480, ~960 +20\b/);
    const resumed = await magic("%ane_train --backend cpu --steps 60 --compile-budget 8 --name tiny --resume", services, cwd);
    expect((resumed.value as AneTrainOutcome).losses[0]!.step).toBe(41);
  });

  it("an interrupt becomes a cancel: training stops at an update boundary and says how to resume", async () => {
    const io = new RecordingIO();
    const running = magic("%ane_train --backend cpu --steps 1000000 --name stopped", services, cwd, io);
    const started = Date.now();
    while (!io.displays().some((d) => PLOTLY_MIME in d.data) && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 50));
    io.interrupt();
    const outcome = (await running).value as AneTrainOutcome;
    expect(outcome.status).toBe("interrupted");
    expect(outcome.steps % 10).toBe(0);
    expect(io.text("stderr")).toMatch(/^Interrupted at step \d+; continue with %ane_train --name stopped --resume --steps 1000000\n$/);
  });
});
