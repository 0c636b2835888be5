import type { BlasInfo } from "./types.js";

/**
 * The BLAS in one phrase: which library, how it was built, the kernels it picked on this CPU and
 * its measured sgemm rate, e.g. "OpenBLAS 0.3.21 (system-openblas, DYNAMIC_ARCH, core Zen) 127 GFLOP/s".
 */
export function blasPhrase(blas: BlasInfo, formatRate: (gflops: number) => string = (g) => String(g)): string {
  const details = [blas.library && blas.library !== "reference" ? blas.library : null, blas.build ?? null, blas.core ? `core ${blas.core}` : null].filter(Boolean);
  const rate = blas.gflops ? ` ${formatRate(blas.gflops)} GFLOP/s` : "";
  return `${blas.name}${details.length ? ` (${details.join(", ")})` : ""}${rate}`;
}

/** The libraries that failed their check on this CPU, one phrase each ("cmeel-openblas: killed by SIGILL (...)"). */
export function blasRejections(blas: BlasInfo): string[] {
  return (blas.candidates ?? []).filter((c) => c.available && !c.ok).map((c) => `${c.name}: ${c.reason ?? "failed its check"}`);
}
