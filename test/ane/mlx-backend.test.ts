import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MagicRegistry } from "../../kernel/magics/registry.js";
import { MAGICS } from "../../kernel/magics/index.js";
import type { MagicContext } from "../../kernel/magics/schema.js";
import { Services } from "../../kernel/session/services.js";
import { InterruptedError } from "../../kernel/errors.js";
import { PLOTLY_MIME } from "../../kernel/display/figure.js";
import { BRIDGE, BridgeClient } from "../../kernel/bridge/client.js";
import type { BenchOutcome } from "../../kernel/ane/bench.js";
import { mlxBench, type MlxBenchRow } from "../../kernel/ane/mlx-bench.js";
import { RecordingIO } from "../display/fake-io.js";
import { ensureWorkerBuilt } from "./built.js";

const registry = new MagicRegistry(MAGICS);

async function magic(source: string, services: Services, cwd: string, io = new RecordingIO()) {
  const [segment] = registry.parseCell(source);
  if (!segment || segment.kind === "code") throw new Error(`not a magic: ${source}`);
  const ctx: MagicContext = { io, services, cwd, evaluate: async () => undefined };
  return { value: (await registry.run(segment, ctx)).value, io };
}

describe("%ane_bench --backend mlx through the MLX bridge", () => {
  const services = new Services();
  const cwd = mkdtempSync(join(tmpdir(), "tunelab-ane-mlx-"));
  beforeAll(() => ensureWorkerBuilt());
  afterAll(() => services.disposeAll());

  it("--backend all shows mlx beside cpu, both checked against float64", async () => {
    const { value, io } = await magic("%ane_bench --backend all --channels 64 --spatial 16 --depths 2,4 --warmup 1 --iters 3", services, cwd);
    const outcome = value as BenchOutcome;
    const measured = outcome.rows.map((r) => [r.backend, r.depth]);
    expect(measured).toEqual(expect.arrayContaining([["cpu", 2], ["cpu", 4], ["mlx", 2], ["mlx", 4]]));
    expect(outcome.unavailable.mlx).toBeUndefined();
    for (const r of outcome.rows) {
      expect([r.channels, r.spatial]).toEqual([64, 16]);
      expect(r.gflop).toBeCloseTo((2 * 64 * 64 * 16 * r.depth) / 1e9, 12);
      expect(r.msMedian).toBeGreaterThan(0);
      expect(r.msP10).toBeLessThanOrEqual(r.msMedian);
      expect(r.msP90).toBeGreaterThanOrEqual(r.msMedian);
      expect(r.tflops).toBeCloseTo(r.gflop / r.msMedian, 9);
      expect(r.relError).toBeGreaterThanOrEqual(0);
      expect(r.relError).toBeLessThan(1e-4);
    }
    const mlxRows = outcome.rows.filter((r) => r.backend === "mlx") as MlxBenchRow[];
    for (const r of mlxRows) {
      expect(r.weightMB).toBeCloseTo((4 * 64 * 64 * r.depth) / 2 ** 20, 9);
      expect(r.device).toMatch(/cpu|gpu/);
      expect(typeof r.compiled).toBe("boolean");
    }
    expect(outcome.peaks.mlx!.tflops).toBeGreaterThan(0);
    expect(outcome.peaks.mlx!.how).toMatch(/MLX matmul 2048²/);
    expect(outcome.peaks.cpu!.tflops).toBeGreaterThan(0);

    const texts = io.displays().map((d) => String(d.data["text/plain"]));
    const tableText = texts.find((t) => t.includes("Conv-stack throughput"))!;
    expect(tableText).toMatch(/\bmlx +2x conv 64ch sp16/);
    expect(tableText).toMatch(/\bcpu +2x conv 64ch sp16/);
    expect(texts.some((t) => t.includes("MLX matmul 2048²"))).toBe(true);
    const chart = io.displays().find((d) => PLOTLY_MIME in d.data)!.data[PLOTLY_MIME] as { data: Array<{ name: string; x: number[] }> };
    expect(chart.data.find((t) => t.name === "mlx 64ch")?.x).toEqual([2, 4]);
    expect(chart.data.find((t) => t.name === "cpu 64ch")?.x).toEqual([2, 4]);
  });

  it("an interrupt cancels the bridge's benchmark, which is then free for the next job", async () => {
    const io = new RecordingIO();
    const running = magic("%ane_bench --backend mlx --channels 256 --spatial 64 --depths 16 --warmup 0 --iters 100000", services, cwd, io);
    const bridge = services.get(BRIDGE);
    const started = Date.now();
    // Interrupt once the benchmark is running on the bridge's worker thread.
    let busy = false;
    while (!busy && Date.now() - started < 100_000) {
      busy = bridge.running && (await bridge.status()).job !== null;
      if (!busy) await new Promise((r) => setTimeout(r, 200));
    }
    expect(busy).toBe(true);
    io.interrupt();
    const error = await running.then(() => new Error("expected an interrupt"), (e: Error) => e);
    expect(error).toBeInstanceOf(InterruptedError);
    expect(Date.now() - started).toBeLessThan(100_000);
    expect((await bridge.status()).job).toBeNull();
  });
});

describe("mlx backend availability", () => {
  it("says how to install the bridge when its Python is missing, without starting anything", async () => {
    const client = new BridgeClient();
    const bench = mlxBench(() => client, { python: join(tmpdir(), "no-such-venv", "bin", "python") });
    const outcome = await bench({ configs: [{ channels: 8, spatial: 4, depth: 1 }], warmup: 0, iters: 1, seed: 0 }, () => undefined, undefined);
    expect(outcome).toEqual({ unavailable: "unavailable: the MLX bridge is not installed; run npm run setup" });
    expect(client.running).toBe(false);
  });
});
