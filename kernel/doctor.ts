import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { BRIDGE_PYTHON, NATIVE_ADDON } from "./paths.js";
import { bridgeEnv } from "./bridge/local.js";
import { runCommand } from "./setup/step.js";
import type { BlasInfo } from "./bridge/types.js";

/**
 * `tunelab doctor`: what the experiments will actually run on. The BLAS line matters most: the
 * mlx-cpu wheel's bundled reference BLAS makes LoRA training about 9x slower, and nobody should
 * get that path without being told how to fix it.
 */

const PROBE = `
import json, sys
from tunelab_bridge.blas import ensure_optimised_blas, blas_report
ensure_optimised_blas()
out = {"python": sys.version.split()[0], "executable": sys.executable}
import mlx.core as mx
out["mlx"] = getattr(mx, "__version__", "?")
out["device"] = str(mx.default_device())
out["metal"] = bool(getattr(mx, "metal", None) and mx.metal.is_available())
cuda = getattr(mx, "cuda", None)
out["cuda"] = bool(cuda and hasattr(cuda, "is_available") and cuda.is_available())
try:
    import mlx_lm
    out["mlx_lm"] = getattr(mlx_lm, "__version__", "?")
except Exception as error:
    out["mlx_lm_error"] = str(error)
out["blas"] = blas_report()
if sys.platform.startswith("linux"):
    from tunelab_bridge.fast import host_kernels
    lib, why = host_kernels.load()
    simd = None
    if lib is not None:
        try:
            simd = lib.tunelab_linear_path(16, host_kernels.path_cap()).decode()
        except ValueError as error:
            why = str(error)
    out["host_kernels"] = {"path": getattr(lib, "_name", None), "simd": simd, "why": why or None}
print("TUNELAB_DOCTOR " + json.dumps(out))
`;

export interface BridgeReport {
  python: string;
  executable: string;
  mlx: string;
  mlx_lm?: string;
  mlx_lm_error?: string;
  device: string;
  metal: boolean;
  cuda: boolean;
  blas: BlasInfo & { warning?: string | null };
  /**
   * Linux: the native kernels %tune's CPU step uses (fused head, frozen projections); simd is the
   * path they take here ("avx512", "avx2", "portable"), null when unavailable.
   */
  host_kernels?: { path: string | null; simd: string | null; why: string | null };
}

export interface DoctorReport {
  bridgePython: string;
  bridge: BridgeReport | null;
  bridgeError: string | null;
  addon: { path: string; loads: boolean; detail: string };
}

export async function probeBridge(python = BRIDGE_PYTHON, env: NodeJS.ProcessEnv = {}): Promise<{ report: BridgeReport | null; error: string | null }> {
  if (!existsSync(python)) return { report: null, error: `not installed (no ${python}); run \`npm run setup\`` };
  const result = await runCommand(python, ["-c", PROBE], { env: bridgeEnv(env), allowFailure: true });
  const line = result.stdout.split("\n").find((l) => l.startsWith("TUNELAB_DOCTOR "));
  if (result.code !== 0 || !line) {
    const tail = result.stderr.trim().split("\n").slice(-3).join(" | ");
    return { report: null, error: `the bridge's Python could not load MLX (${tail || `exit code ${result.code}`}); run \`npm run setup\`` };
  }
  return { report: JSON.parse(line.slice("TUNELAB_DOCTOR ".length)) as BridgeReport, error: null };
}

export function probeAddon(path = NATIVE_ADDON): DoctorReport["addon"] {
  if (!existsSync(path)) return { path, loads: false, detail: "not built; run `npm run setup`" };
  try {
    const addon = createRequire(import.meta.url)(path) as Record<string, unknown>;
    const exports = Object.keys(addon).sort().join(", ");
    return { path, loads: true, detail: `exports ${exports || "nothing"}` };
  } catch (error) {
    return { path, loads: false, detail: (error as Error).message.split("\n")[0]! };
  }
}

export async function doctor(): Promise<DoctorReport> {
  const { report, error } = await probeBridge();
  return { bridgePython: BRIDGE_PYTHON, bridge: report, bridgeError: error, addon: probeAddon() };
}

export function formatDoctor(d: DoctorReport): string {
  const lines = [`bridge Python:  ${d.bridgePython}`];
  if (d.bridge) {
    const b = d.bridge;
    const backend = b.metal ? "Metal" : b.cuda ? "CUDA" : "CPU";
    lines.push(`                Python ${b.python} (${b.executable})`);
    lines.push(`MLX:            ${b.mlx}, backend ${backend}, default device ${b.device}`);
    lines.push(`mlx-lm:         ${b.mlx_lm ?? `not importable (${b.mlx_lm_error})`}`);
    const rate = b.blas.gflops === null || b.blas.gflops === undefined ? "not measured" : `${b.blas.gflops} GFLOP/s sgemm`;
    lines.push(`BLAS:           ${b.blas.name}, ${rate}`);
    if (b.blas.path) lines.push(`                ${b.blas.path}`);
    if (b.blas.reference) lines.push(`WARNING:        ${b.blas.warning ?? "MLX runs on the slow reference BLAS; run `npm run setup` to install OpenBLAS."}`);
    const k = b.host_kernels;
    if (k) {
      if (!k.path) lines.push(`host kernels:   unavailable: ${k.why}; %tune computes the head and projections with MLX`);
      else if (!k.simd) lines.push(`host kernels:   off: ${k.why}`);
      else if (k.simd === "portable") lines.push(`host kernels:   built, but this CPU has neither AVX-512 nor AVX2 (or TUNELAB_HOST_KERNELS_PATH rules them out): %tune computes the head and projections with MLX (${k.path})`);
      else lines.push(`host kernels:   ${k.simd === "avx512" ? "AVX-512" : "AVX2"} (${k.path})`);
    }
  } else {
    lines.push(`MLX:            ${d.bridgeError}`);
  }
  lines.push(`native addon:   ${d.addon.loads ? "loads" : "does not load"} (${d.addon.path})`);
  lines.push(`                ${d.addon.detail}`);
  return lines.join("\n");
}

export async function run(argv: string[]): Promise<number> {
  const report = await doctor();
  if (argv.includes("--json")) console.log(JSON.stringify(report, null, 2));
  else console.log(formatDoctor(report));
  return report.bridge && report.addon.loads ? 0 : 1;
}
