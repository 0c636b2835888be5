import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Everything a replacement worker needs to continue a training run exactly where it stopped. Taken
 * only between iterations (an update and its overlapped stale batch), where no gradient is half
 * accumulated and no compile is in flight.
 */
export interface TrainCheckpoint {
  version: 2;
  step: number;
  loss: number;
  shapes: { S: number; D: number; H: number };
  lr: number;
  accum: number;
  backend: string;
  /** Cumulative over all workers of this run. */
  compileMs: number;
  /** The part of compileMs spent while a stale batch ran, so not waited for. */
  hiddenCompileMs: number;
  trainMs: number;
  compiles: number;
  batches: number;
  staleBatches: number;
  /** The weights being trained. */
  W1: Float32Array;
  W2: Float32Array;
  /**
   * The weights the current kernels were compiled from: with the compile overlapping the stale
   * batch, kernels lag the trained weights by that batch's half-rate update. A fresh worker compiles
   * these, so a restarted run computes exactly what an unrestarted one does.
   */
  kernelW1: Float32Array;
  kernelW2: Float32Array;
}

const ARRAYS = ["W1", "W2", "kernelW1", "kernelW2"] as const;
type OnDisk = Omit<TrainCheckpoint, (typeof ARRAYS)[number]> & Record<(typeof ARRAYS)[number], string>;

function encode(values: Float32Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString("base64");
}

function decode(text: string): Float32Array {
  const bytes = Buffer.from(text, "base64");
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

/** Written to a temporary file and renamed, so a worker killed mid-write leaves the previous checkpoint intact. */
export function writeCheckpoint(path: string, checkpoint: TrainCheckpoint): void {
  mkdirSync(dirname(path), { recursive: true });
  const onDisk = { ...checkpoint } as unknown as OnDisk;
  for (const key of ARRAYS) onDisk[key] = encode(checkpoint[key]);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(onDisk));
  renameSync(tmp, path);
}

export function readCheckpoint(path: string): TrainCheckpoint | undefined {
  if (!existsSync(path)) return undefined;
  const raw = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  if (raw.version === 1) {
    // Version 1 recompiled its kernels from the trained weights at every update.
    const W1 = decode(raw.W1 as string);
    const W2 = decode(raw.W2 as string);
    return {
      version: 2,
      step: Number(raw.step),
      loss: Number(raw.loss),
      shapes: raw.shapes as TrainCheckpoint["shapes"],
      lr: Number(raw.lr),
      accum: Number(raw.accum),
      backend: String(raw.backend),
      compileMs: Number(raw.compileMs),
      hiddenCompileMs: 0,
      trainMs: Number(raw.trainMs),
      compiles: Number(raw.compiles),
      batches: 0,
      staleBatches: 0,
      W1,
      W2,
      kernelW1: W1.slice(),
      kernelW2: W2.slice(),
    };
  }
  if (raw.version !== 2) throw new Error(`${path} is a checkpoint of an unknown version (${String(raw.version)})`);
  const onDisk = raw as unknown as OnDisk;
  const checkpoint = { ...onDisk } as unknown as TrainCheckpoint;
  for (const key of ARRAYS) checkpoint[key] = decode(onDisk[key]);
  return checkpoint;
}
