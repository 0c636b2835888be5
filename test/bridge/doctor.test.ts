import { describe, expect, it } from "vitest";
import { doctor, formatDoctor, probeAddon, probeBridge } from "../../kernel/doctor.js";
import { bridgeInstalled } from "./fixtures.js";

describe("tunelab doctor", () => {
  it("says how to fix a missing bridge or addon", async () => {
    const missing = await probeBridge("/nonexistent/bin/python");
    expect(missing.report).toBeNull();
    expect(missing.error).toMatch(/npm run setup/);
    const addon = probeAddon("/nonexistent/tunelab_native.node");
    expect(addon.loads).toBe(false);
    expect(addon.detail).toMatch(/npm run setup/);
  });

  it.skipIf(!bridgeInstalled)("reports MLX, its backend and the BLAS it multiplies with", async () => {
    const report = await doctor();
    expect(report.bridge, report.bridgeError ?? "").not.toBeNull();
    expect(report.bridge!.mlx).toMatch(/^\d+\.\d+/);
    expect(report.bridge!.blas.name).toBeTruthy();
    const text = formatDoctor(report);
    expect(text).toMatch(/^MLX: +\d+\.\d+.*backend (CPU|Metal|CUDA)/m);
    expect(text).toMatch(/^BLAS: +.+sgemm \d+x\d+ at [\d.]+ GFLOP\/s/m);
    if (process.platform === "linux") {
      expect(text).toMatch(/^CPU: +.+\(x86-64-v\d|^CPU: +.+\(aarch64/m);
      // Every candidate is listed: the chosen one starred, the others with their rate or why not.
      expect(text).toMatch(/^  \* \S+ +passed, [\d.]+ GFLOP\/s/m);
      expect(text).toMatch(/^ {4}reference +passed, [\d.]+ GFLOP\/s/m);
    }
    expect(text).toMatch(/^native addon: +(loads|does not load)/m);
    if (process.platform === "linux") expect(text).toMatch(/^host kernels: +((AVX-512|AVX2) \(\/.+\.so\)|unavailable: .+|built, but)/m);
  });

  it.skipIf(!bridgeInstalled || process.platform !== "linux")("warns, with the fix, when MLX runs on the reference BLAS", async () => {
    const { report } = await probeBridge(undefined, { TUNELAB_BLAS: "reference" });
    expect(report!.blas.reference).toBe(true);
    const text = formatDoctor({ bridgePython: "python", bridge: report, bridgeError: null, addon: probeAddon("/nonexistent") });
    expect(text).toMatch(/^WARNING: +MLX is running on the slow reference BLAS.*unset TUNELAB_BLAS/m);
    expect(report!.blas.candidates!.map((c) => c.name)).toEqual(["reference"]);
  });
});
