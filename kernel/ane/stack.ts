import { weightBlob } from "./blob.js";
import { convStackMil, type MilWeight } from "./mil.js";
import type { BackendName, GraphDescription } from "./addon.js";

/** A chain of 1x1 convs: layer i maps channels[i] -> channels[i + 1] with weights[i], row-major [out, in]. */
export interface ConvStack {
  channels: number[];
  spatial: number;
  weights: Float32Array[];
}

/**
 * Another client of the same API reports that a program with more than 16 weight files fails to
 * compile ("24 fails immediately"), so a deep stack cannot have a file per layer.
 */
export const MAX_WEIGHT_FILES = 16;

/** The weight files of a program: one file (`weights/weight.bin`) unless more are asked for. */
export function weightFileNames(files: number): string[] {
  if (!Number.isInteger(files) || files < 1 || files > MAX_WEIGHT_FILES) {
    throw new RangeError(`a program has 1 to ${MAX_WEIGHT_FILES} weight files, not ${files}`);
  }
  return files === 1 ? ["weights/weight.bin"] : Array.from({ length: files }, (_, k) => `weights/weight-${k}.bin`);
}

/**
 * What a backend compiles: fp32 weights for the cpu; for the ANE, a MIL program and its weights in
 * one file with every layer's chunk at 64 + i·(64 + size), as maderix/ANE's peak benchmark lays
 * them out (or, with `files` > 1, the layers split in order over that many such files, at most 16).
 */
export function describeFor(backend: BackendName, stack: ConvStack, files = 1): GraphDescription {
  if (backend === "cpu") return { channels: stack.channels, spatial: stack.spatial, weights: stack.weights };
  weightFileNames(files); // says what is wrong with `files` before it is clamped to the layers
  const names = weightFileNames(Math.min(files, Math.max(1, stack.weights.length)));
  const perFile = Math.ceil(stack.weights.length / names.length);
  const refs: MilWeight[] = [];
  const blobs = names.map((path, k) => {
    const blob = weightBlob(stack.weights.slice(k * perFile, (k + 1) * perFile));
    for (const offset of blob.offsets) refs.push({ path, offset });
    return { path, bytes: blob.bytes };
  });
  const mil = convStackMil({ channels: stack.channels, spatial: stack.spatial, weights: refs });
  return { channels: stack.channels, spatial: stack.spatial, mil, blobs: blobs.filter((_, k) => k * perFile < stack.weights.length) };
}
