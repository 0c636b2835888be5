import { weightBlob } from "./blob.js";
import { convStackMil } from "./mil.js";
import type { BackendName, GraphDescription } from "./addon.js";

/** A chain of 1x1 convs: layer i maps channels[i] -> channels[i + 1] with weights[i], row-major [out, in]. */
export interface ConvStack {
  channels: number[];
  spatial: number;
  weights: Float32Array[];
}

/** What a backend compiles: fp32 weights for the cpu, a MIL program plus one blob per matrix for the ANE. */
export function describeFor(backend: BackendName, stack: ConvStack): GraphDescription {
  if (backend === "cpu") return { channels: stack.channels, spatial: stack.spatial, weights: stack.weights };
  // One file per matrix: every chip accepts it (M1 rejects one shared blob).
  const blobs = stack.weights.map((w, i) => ({ path: `weights/w${i}.bin`, bytes: weightBlob([w]).bytes }));
  const mil = convStackMil({
    channels: stack.channels,
    spatial: stack.spatial,
    weights: blobs.map((b) => ({ path: b.path, offset: 64 })),
  });
  return { channels: stack.channels, spatial: stack.spatial, mil, blobs };
}
