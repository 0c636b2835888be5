/**
 * The CPU and BLAS the bridge runs on here, as the benchmarks name them: every figure in
 * BENCHMARKS.md says which CPU (and its instruction sets) and which BLAS it was measured with.
 */
import { execFile } from "node:child_process";
import { blasPhrase } from "../kernel/bridge/blas-text.js";
import { bridgeEnv } from "../kernel/bridge/local.js";
import type { BlasInfo } from "../kernel/bridge/types.js";
import { BRIDGE_PYTHON } from "../kernel/paths.js";

/** The bridge's BLAS report (python -m tunelab_bridge.blas); `recheck` measures every candidate again. */
export function bridgeBlas(env: NodeJS.ProcessEnv = {}, recheck = false): Promise<BlasInfo> {
  return new Promise((resolve, reject) => {
    const args = ["-m", "tunelab_bridge.blas", "--json", ...(recheck ? ["--recheck"] : [])];
    execFile(BRIDGE_PYTHON, args, { env: bridgeEnv(env), maxBuffer: 1 << 22 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`the bridge's BLAS report failed: ${stderr.trim().slice(-400) || error.message}`));
      else resolve(JSON.parse(stdout.trim().split("\n").pop()!) as BlasInfo);
    });
  });
}

/** "AMD EPYC (x86-64-v3: AVX2 FMA3, no AVX-512); BLAS OpenBLAS 0.3.21 (system-openblas, DYNAMIC_ARCH, core Zen)". */
export function machineLine(blas: BlasInfo): string {
  return `${blas.cpu?.summary ?? "unknown CPU"}; BLAS ${blasPhrase({ ...blas, gflops: null })}`;
}

/** Every candidate's sgemm rate on this CPU, or why it cannot run here, as a markdown table. */
export function candidatesTable(blas: BlasInfo): string[] {
  return [
    "| BLAS candidate | from | build, kernels picked here | sgemm through MLX (GFLOP/s) | on this CPU |",
    "|---|---|---|---:|---|",
    ...(blas.candidates ?? []).map((c) => {
      const build = c.config ? `${/DYNAMIC_ARCH/.test(c.config) ? "DYNAMIC_ARCH" : "one CPU family"}, ${c.core ?? "?"}` : c.name === "reference" ? "netlib reference" : "";
      const state = c.ok ? (c.chosen ? "passed, **chosen**" : "passed") : `${c.available ? "failed" : "unavailable"}: ${c.reason}`;
      return `| ${c.name} | ${c.origin} | ${build} | ${c.ok ? `${c.gflops} (${c.size}²)` : ""} | ${state} |`;
    }),
  ];
}
