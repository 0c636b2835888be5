import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** Everything a replacement worker needs to continue a training run exactly where it stopped. */
export interface TrainCheckpoint {
  version: 1;
  step: number;
  loss: number;
  shapes: { S: number; D: number; H: number };
  lr: number;
  accum: number;
  seed: number;
  backend: string;
  /** Cumulative over all workers of this run. */
  compileMs: number;
  trainMs: number;
  compiles: number;
  W1: Float32Array;
  W2: Float32Array;
}

interface OnDisk extends Omit<TrainCheckpoint, "W1" | "W2"> {
  W1: string;
  W2: string;
}

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
  const onDisk: OnDisk = { ...checkpoint, W1: encode(checkpoint.W1), W2: encode(checkpoint.W2) };
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(onDisk));
  renameSync(tmp, path);
}

export function readCheckpoint(path: string): TrainCheckpoint | undefined {
  if (!existsSync(path)) return undefined;
  const onDisk = JSON.parse(readFileSync(path, "utf8")) as OnDisk;
  if (onDisk.version !== 1) throw new Error(`${path} is a checkpoint of an unknown version`);
  return { ...onDisk, W1: decode(onDisk.W1), W2: decode(onDisk.W2) };
}
