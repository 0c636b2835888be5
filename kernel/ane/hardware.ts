import { arch, cpus, platform } from "node:os";

/**
 * The machine a measurement ran on, as claimed-vs-measured tables name it: the ANE worker runs
 * beside the kernel, so its CPU (or, on a Mac, its chip: "Apple M4 Max") is this process's.
 */
export function machineSummary(): string {
  const all = cpus();
  const model = all[0]?.model.trim().replace(/\s+/g, " ") || "an unnamed CPU";
  return `${model} (${platform()} ${arch()}, ${all.length} logical CPUs)`;
}
