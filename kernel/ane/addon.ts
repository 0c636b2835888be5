import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { NATIVE_ADDON } from "../paths.js";
import { UserFacingError } from "../errors.js";

export type BackendName = "ane" | "cpu";

/** An opaque compiled graph owned by the addon. */
export type GraphHandle = { readonly __graph: unique symbol };

/** What the addon's `compile` takes: a chain of 1x1 convs, with what each backend needs to build it. */
export interface GraphDescription {
  channels: number[];
  spatial: number;
  /** fp32 row-major [out, in] per layer (cpu backend). */
  weights?: Float32Array[];
  /** MIL program text and its weight files (ane backend). */
  mil?: string;
  blobs?: Array<{ path: string; bytes: Uint8Array }>;
}

export interface Availability {
  available: boolean;
  reason?: string;
}

/** The native addon's surface (native/src/addon.cc). */
export interface NativeAddon {
  availability(backend: BackendName): Availability;
  compiles(backend: BackendName): number;
  compile(backend: BackendName, graph: GraphDescription): Promise<GraphHandle>;
  evaluate(graph: GraphHandle, input: Float32Array, output: Float32Array): Promise<void>;
  /** Milliseconds of each timed evaluation, after `warmup` untimed ones. */
  time(graph: GraphHandle, input: Float32Array, warmup: number, iters: number): Promise<Float64Array>;
  release(graph: GraphHandle): void;
  /** Milliseconds per n x n x n sgemm through the same BLAS as the cpu backend. */
  sgemm(n: number, warmup: number, iters: number): Promise<Float64Array>;
  blas(): string;
}

let loaded: NativeAddon | undefined;

/** Loads the addon; only the ANE worker process calls this, never the kernel. */
export function loadAddon(path = NATIVE_ADDON): NativeAddon {
  if (loaded) return loaded;
  if (!existsSync(path)) {
    throw new UserFacingError(`The native addon is not built (${path} is missing); run \`npm run setup\` to build it.`);
  }
  loaded = createRequire(import.meta.url)(path) as NativeAddon;
  return loaded;
}
