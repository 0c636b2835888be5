import { describe, expect, it } from "vitest";
import { loadAddon } from "../../kernel/ane/addon.js";
import { checkStack, randomInput, randomStack, runBenchJob, TOLERANCE } from "../../kernel/ane/bench-job.js";
import { Random } from "../../kernel/ane/random.js";
import { referenceColumns, relativeError } from "../../kernel/ane/reference.js";
import { describeFor } from "../../kernel/ane/stack.js";
import { benchFigure, benchTable } from "../../kernel/ane/views.js";

// The addon is loaded in this test process on purpose: the kernel never does (it uses the worker).
const addon = loadAddon();

describe("cpu backend", () => {
  it("matches a float64 reference within 1e-4 on every spatial column, on the packed and the cblas paths", async () => {
    const cases = [
      { channels: [512, 512, 512, 512, 512], spatial: 64 },
      { channels: [64, 128, 64], spatial: 16 },
      // Row counts that do not fill a 6-row panel and widths that leave a partial column block.
      { channels: [20, 7, 33], spatial: 80 },
      { channels: [9, 13], spatial: 48 },
      // A width the packed kernel does not take: one cblas_sgemm per layer.
      { channels: [3, 17, 5], spatial: 7 },
    ];
    for (const [i, c] of cases.entries()) {
      const rng = new Random(100 + i);
      const weights = c.channels.slice(1).map((cout, l) => rng.fill(new Float32Array(cout * c.channels[l]!), 1 / Math.sqrt(c.channels[l]!)));
      const stack = { channels: c.channels, spatial: c.spatial, weights };
      const input = rng.fill(new Float32Array(c.channels[0]! * c.spatial));
      const graph = await addon.compile("cpu", describeFor("cpu", stack));
      const output = new Float32Array(c.channels.at(-1)! * c.spatial);
      await addon.evaluate(graph, input, output);
      addon.release(graph);
      const all = Array.from({ length: c.spatial }, (_, k) => k);
      const error = relativeError(output, c.spatial, referenceColumns(stack, input, all), all);
      expect(error).toBeLessThan(1e-4);
      expect(error).toBeGreaterThan(0); // fp32, so not bit-identical to float64: the check is real
    }
  });

  it("would notice a wrong result", async () => {
    const stack = randomStack({ channels: 32, spatial: 8, depth: 3 }, 5);
    const input = randomInput(32 * 8, 5);
    const graph = await addon.compile("cpu", describeFor("cpu", stack));
    expect(await checkStack(addon, "cpu", stack, graph, input, 5)).toBeLessThan(TOLERANCE.cpu);
    const tampered = { ...stack, weights: stack.weights.map((w, i) => (i === 1 ? w.map((v) => v * 1.001) : w)) };
    expect(await checkStack(addon, "cpu", tampered, graph, input, 5)).toBeGreaterThan(TOLERANCE.cpu);
    addon.release(graph);
  });

  it("counts compiles and refuses a released graph", async () => {
    const before = addon.compiles("cpu");
    const graph = await addon.compile("cpu", describeFor("cpu", randomStack({ channels: 8, spatial: 4, depth: 2 }, 1)));
    expect(addon.compiles("cpu")).toBe(before + 1);
    addon.release(graph);
    expect(() => addon.evaluate(graph, new Float32Array(32), new Float32Array(32))).toThrow(/released/);
  });

  it("rejects mismatched buffers with a clear error instead of reading past them", async () => {
    const graph = await addon.compile("cpu", describeFor("cpu", randomStack({ channels: 8, spatial: 4, depth: 1 }, 1)));
    expect(() => addon.evaluate(graph, new Float32Array(31), new Float32Array(32))).toThrow(/input has 31 elements; the graph needs 32/);
    await expect(addon.compile("cpu", { channels: [4, 4], spatial: 2, weights: [new Float32Array(3)] })).rejects.toThrow(/does not match/);
    addon.release(graph);
  });

  it("times a stack and a plain sgemm through the same BLAS", async () => {
    const result = await runBenchJob(addon, { backend: "cpu", configs: [{ channels: 128, spatial: 32, depth: 4 }], warmup: 1, iters: 3, seed: 0 }, { emit: () => undefined, cancelled: () => false });
    expect(result.rows).toHaveLength(1);
    const row = result.rows[0]!;
    expect(row.gflop).toBeCloseTo((2 * 128 * 128 * 32 * 4) / 1e9, 12);
    expect(row.weightMB).toBeCloseTo((128 * 128 * 4 * 4) / 2 ** 20, 12);
    expect(row.msMedian).toBeGreaterThan(0);
    expect(row.tflops).toBeCloseTo(row.gflop / row.msMedian, 12);
    expect(row.relError).toBeLessThan(1e-4);
    expect(result.peak.tflops).toBeGreaterThan(0);
    expect(result.peak.how).toMatch(/sgemm 2048/);
  });
});

describe("a config that fails is a FAIL row, and the benchmark goes on", () => {
  it("a compile the backend refuses becomes a failed row with the reason; the next config is measured", async () => {
    process.env.TUNELAB_CPU_FAIL_COMPILE = String(addon.compiles("cpu") + 2);
    const emitted: unknown[] = [];
    try {
      const configs = [16, 24, 32].map((channels) => ({ channels, spatial: 16, depth: 2 }));
      const result = await runBenchJob(addon, { backend: "cpu", configs, warmup: 0, iters: 2, seed: 0 }, { emit: (_, data) => emitted.push(data), cancelled: () => false });
      expect(result.rows.map((r) => [r.channels, r.status])).toEqual([[16, "ok"], [24, "failed"], [32, "ok"]]);
      const failed = result.rows[1]!;
      expect(failed.error).toMatch(/^compile failed: compile \d+ of this process failed \(injected by TUNELAB_CPU_FAIL_COMPILE\)$/);
      expect([failed.msMedian, failed.tflops, failed.relError]).toEqual([NaN, NaN, NaN]);
      expect(failed.gflop).toBeCloseTo((2 * 24 * 24 * 16 * 2) / 1e9, 12);
      expect(emitted).toHaveLength(3);
      expect(result.rows[2]!.tflops).toBeGreaterThan(0);
      // The table says FAIL and why; the chart leaves the failed config out.
      const shown = benchTable({ rows: result.rows, peaks: { cpu: result.peak }, unavailable: {}, blas: "" }).toPlain();
      expect(shown).toMatch(/cpu +2x conv 24ch sp16 .* FAIL .*compile failed: compile \d+ of this process failed/);
      expect(shown).toContain("why it failed");
      expect(benchFigure(result.rows, false).spec.data.map((t) => (t as { x: number[] }).x)).toEqual([[2], [2]]);
    } finally {
      delete process.env.TUNELAB_CPU_FAIL_COMPILE;
    }
  });
});

describe("ane backend", () => {
  it.runIf(process.platform !== "darwin")(`reports "unavailable on ${process.platform}-${process.arch}" without throwing`, () => {
    expect(addon.availability("ane")).toEqual({ available: false, reason: `unavailable on ${process.platform}-${process.arch}` });
    expect(addon.compiles("ane")).toBe(0);
  });

  it.runIf(process.platform !== "darwin")("refuses to compile with the same reason and a way out", async () => {
    const graph = describeFor("ane", randomStack({ channels: 8, spatial: 16, depth: 1 }, 1));
    await expect(addon.compile("ane", graph)).rejects.toThrow(`the ANE is unavailable on ${process.platform}-${process.arch}; use --backend cpu`);
  });

  it.runIf(process.platform === "darwin" && process.arch === "arm64")("matches the fp16-rounded float64 reference on Apple silicon", async () => {
    const result = await runBenchJob(addon, { backend: "ane", configs: [{ channels: 512, spatial: 64, depth: 8 }], warmup: 2, iters: 5, seed: 0 }, { emit: () => undefined, cancelled: () => false });
    expect(result.rows[0]!.relError).toBeLessThan(TOLERANCE.ane);
  });
});
