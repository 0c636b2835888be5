import { totalmem } from "node:os";
import { UsageError } from "../errors.js";

/** One peak-benchmark shape: D chained 1x1 convs C -> C over S spatial positions. */
export interface StackConfig {
  channels: number;
  spatial: number;
  depth: number;
}

/** The reference repository's full set of peak-benchmark configs (`--configs seed`). */
export const SEED_CONFIGS: readonly StackConfig[] = [
  ...[32, 48, 64, 96, 128].map((depth) => ({ channels: 512, spatial: 64, depth })),
  ...[64, 128, 256].map((depth) => ({ channels: 256, spatial: 64, depth })),
  ...[64, 128].map((depth) => ({ channels: 384, spatial: 64, depth })),
];

/**
 * M4 Max figures for C=512, S=64 (ms per eval, TFLOPS), keyed by depth. They come from the
 * reproduction write-up in this project's brief, not from maderix/ANE's repository, whose only M4 Max
 * peak is 10.93 TFLOPS (benchmarks/community_results.json); tables and charts label them so.
 */
export const M4_MAX_REFERENCE: Readonly<Record<number, { ms: number; tflops: number }>> = {
  32: { ms: 0.155, tflops: 6.92 },
  48: { ms: 0.208, tflops: 7.73 },
  64: { ms: 0.28, tflops: 7.66 },
  96: { ms: 0.322, tflops: 10.02 },
  128: { ms: 0.379, tflops: 11.34 },
};

export function gflopPerEval(c: StackConfig): number {
  return (2 * c.channels * c.channels * c.spatial * c.depth) / 1e9;
}

/** Weight bytes a backend holds: fp16 on the ANE (and in the reference table), fp32 on the cpu. */
export function weightBytes(c: StackConfig, bytesPerWeight: number): number {
  return c.channels * c.channels * c.depth * bytesPerWeight;
}

export const M4_MAX_REFERENCE_SOURCE = "the reproduction write-up in the project brief, not maderix/ANE's repository";

/** The M4's quoted fp16 peak that the write-up measures its best stack against ("~19 TFLOPS"). */
export const M4_MAX_QUOTED_PEAK_TFLOPS = 19;

export const LIMITS = { maxChannels: 8192, maxSpatial: 16384, maxDepth: 4096 } as const;

/**
 * Other clients of the ANE framework report status 0x1d or garbage unless every row of a tensor is a
 * multiple of 64 bytes; the programs here take fp32 [1, C, 1, S], so S must be a multiple of 16.
 */
export const ANE_SPATIAL_MULTIPLE = 16;

/** Refuses, before anything runs, a spatial size the ANE cannot take. */
export function validateForAne(configs: readonly StackConfig[]): void {
  for (const { spatial } of configs) {
    if (spatial % ANE_SPATIAL_MULTIPLE === 0) continue;
    const below = Math.floor(spatial / ANE_SPATIAL_MULTIPLE) * ANE_SPATIAL_MULTIPLE;
    const above = below + ANE_SPATIAL_MULTIPLE;
    const suggestion = below > 0 ? `--spatial ${below} or ${above}` : `--spatial ${above}`;
    throw new UsageError(
      `--spatial must be a multiple of ${ANE_SPATIAL_MULTIPLE} for the ANE (each row of its [1, C, 1, S] fp32 tensor must be a multiple of 64 bytes), got ${spatial}; use ${suggestion}, or --backend cpu.`,
    );
  }
}

/**
 * How many bytes a benchmark may ask for: its fp32 weights exist twice while compiling (the
 * generator's copy and the backend's). A quarter of the machine's memory, at most 8 GiB.
 */
export function memoryBudget(): number {
  return Math.min(8 * 2 ** 30, Math.floor(totalmem() / 4));
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** Rejects shapes before anything is allocated; every message names the flag and what to do. */
export function validateConfigs(configs: readonly StackConfig[], budget = memoryBudget()): void {
  for (const c of configs) {
    const checks: Array<[string, number, number]> = [
      ["--channels", c.channels, LIMITS.maxChannels],
      ["--spatial", c.spatial, LIMITS.maxSpatial],
      ["--depths", c.depth, LIMITS.maxDepth],
    ];
    for (const [name, value, max] of checks) {
      if (!Number.isInteger(value) || value < 1) throw new UsageError(`${name} must be a positive integer, got ${value}.`);
      if (value > max) throw new UsageError(`${name} must be at most ${max}, got ${value}.`);
    }
    const needed = 2 * weightBytes(c, 4) + 4 * c.channels * c.spatial * 4;
    if (needed > budget) {
      throw new UsageError(
        `A stack of ${c.depth} convs of ${c.channels} channels needs about ${gib(needed)} of weights, over this machine's budget of ${gib(budget)}; use smaller --depths or --channels.`,
      );
    }
  }
}

/** The configs a %ane_bench line asks for. */
export function configsFrom(args: { configs?: string; channels: number; spatial: number; depths: number[] }): StackConfig[] {
  if (args.configs === "seed") return SEED_CONFIGS.map((c) => ({ ...c }));
  return args.depths.map((depth) => ({ channels: args.channels, spatial: args.spatial, depth }));
}
