import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { BRIDGE_PYTHON, NATIVE_ADDON } from "./paths.js";
import { bridgeEnv, pythonCommand } from "./bridge/local.js";
import { blasPhrase } from "./bridge/blas-text.js";
import { runCommand } from "./setup/step.js";
import type { BlasInfo } from "./bridge/types.js";

/**
 * `tunelab doctor`: what the experiments will actually run on. The BLAS line matters most: the
 * mlx-cpu wheel's bundled reference BLAS makes LoRA training about 9x slower, and nobody should
 * get that path without being told how to fix it.
 */

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
   * path they take here ("avx512", "avx2", "portable"), null when unavailable; checks holds this
   * CPU's check of each path (null: passed, else why it failed).
   */
  host_kernels?: { path: string | null; simd: string | null; why: string | null; checks?: Record<string, string | null> };
  /** Linux: %generate's CPU engine (python-bridge/tunelab_bridge/llama_build.py status()). */
  llama_cpp?: { version: string; ok: boolean; built: boolean; flags: string[]; path: string; unavailable?: string; check: { ok: boolean; system_info?: string } | null };
}

export interface DoctorReport {
  bridgePython: string;
  bridge: BridgeReport | null;
  bridgeError: string | null;
  addon: { path: string; loads: boolean; detail: string };
}

/**
 * Runs the bridge's own report (python-bridge/tunelab_bridge/doctor.py) with the bridge's start-up:
 * BLAS chosen and checked on this CPU, host kernels checked. `recheck` checks every BLAS again.
 */
export async function probeBridge(python = BRIDGE_PYTHON, env: NodeJS.ProcessEnv = {}, recheck = false): Promise<{ report: BridgeReport | null; error: string | null }> {
  if (!existsSync(python)) return { report: null, error: `not installed (no ${python}); run \`npm run setup\`` };
  const fullEnv = bridgeEnv(env);
  const { command, args } = pythonCommand(python, ["-m", "tunelab_bridge.doctor", ...(recheck ? ["--recheck"] : [])], fullEnv);
  const result = await runCommand(command, args, { env: fullEnv, allowFailure: true });
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

export async function doctor(recheck = false): Promise<DoctorReport> {
  const { report, error } = await probeBridge(BRIDGE_PYTHON, {}, recheck);
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
    if (b.blas.cpu) lines.push(`CPU:            ${b.blas.cpu.summary}`);
    const rate = b.blas.gflops === null || b.blas.gflops === undefined ? "not measured" : `sgemm ${b.blas.size ?? ""}${b.blas.size ? `x${b.blas.size} ` : ""}at ${b.blas.gflops} GFLOP/s`;
    lines.push(`BLAS:           ${blasPhrase({ ...b.blas, gflops: null })}, ${rate}`);
    if (b.blas.path) lines.push(`                ${b.blas.path}`);
    for (const c of b.blas.candidates ?? []) {
      const state = c.ok ? `passed, ${c.gflops} GFLOP/s${c.core ? ` (core ${c.core})` : ""}` : `${c.available ? "failed" : "unavailable"}: ${c.reason}`;
      lines.push(`  ${c.chosen ? "*" : " "} ${c.name.padEnd(17)} ${state}  [${c.origin}]`);
    }
    if (b.blas.checked_at) lines.push(`                checked on this CPU ${b.blas.checked_at}; \`tunelab doctor --recheck\` checks again`);
    if (b.blas.warning) lines.push(`WARNING:        ${b.blas.warning}`);
    const k = b.host_kernels;
    if (k) {
      if (!k.path) lines.push(`host kernels:   unavailable: ${k.why}; %tune computes the head and projections with MLX`);
      else if (!k.simd) lines.push(`host kernels:   off: ${k.why}`);
      else if (k.simd === "portable") lines.push(`host kernels:   built, but this CPU has neither AVX-512 nor AVX2 (or TUNELAB_HOST_KERNELS_PATH rules them out): %tune computes the head and projections with MLX (${k.path})`);
      else lines.push(`host kernels:   ${k.simd === "avx512" ? "AVX-512" : "AVX2"} (${k.path})`);
      const failed = Object.entries(k.checks ?? {}).filter(([, why]) => why);
      for (const [path, why] of failed) lines.push(`                ${path} path failed its check on this CPU: ${why}`);
    }
    const l = b.llama_cpp;
    if (l) {
      if (l.ok) lines.push(`generation:     llama.cpp (llama-cpp-python ${l.version}) built and checked on this CPU: %generate on the embedded model uses it`);
      else lines.push(`generation:     MLX, because ${l.unavailable ?? "llama.cpp is not ready"}`);
      if (l.ok && l.check?.system_info) lines.push(`                ${l.check.system_info.trim()}`);
    }
  } else {
    lines.push(`MLX:            ${d.bridgeError}`);
  }
  lines.push(`native addon:   ${d.addon.loads ? "loads" : "does not load"} (${d.addon.path})`);
  lines.push(`                ${d.addon.detail}`);
  return lines.join("\n");
}

export async function run(argv: string[]): Promise<number> {
  const report = await doctor(argv.includes("--recheck"));
  if (argv.includes("--json")) console.log(JSON.stringify(report, null, 2));
  else console.log(formatDoctor(report));
  return report.bridge && report.addon.loads ? 0 : 1;
}
