import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
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
  /**
   * Milliseconds of each timed evaluation, after `warmup` untimed ones. On the cpu backend an
   * evaluation is the whole computation; on the ane backend the input is written once and each
   * time is the framework's evaluate call alone (no copies in or out), as maderix/ANE times it.
   * Setting `stop[0]` to a non-zero value from JavaScript ends the loop at the next evaluation
   * (fewer times come back).
   */
  time(graph: GraphHandle, input: Float32Array, warmup: number, iters: number, stop?: Int32Array): Promise<Float64Array>;
  release(graph: GraphHandle): void;
  /** Milliseconds per n x n x n sgemm through the same BLAS as the cpu backend. */
  sgemm(n: number, warmup: number, iters: number): Promise<Float64Array>;
  blas(): string;
}

let loaded: NativeAddon | undefined;

/**
 * The cpu backend's threads meet at a barrier after every layer. On an idle machine a short spin
 * there keeps 16 threads fed (sleeping at once costs them three quarters of their speed); on a
 * machine already busier than its cores, spinning threads starve the ones they wait for, so they
 * sleep instead. OpenMP reads this once, when the addon loads; a setting of the user's wins.
 */
function waitPolicy(env: NodeJS.ProcessEnv): void {
  if (env.OMP_WAIT_POLICY !== undefined || env.GOMP_SPINCOUNT !== undefined) return;
  if (loadavg()[0]! >= availableParallelism()) env.OMP_WAIT_POLICY = "passive";
  else env.GOMP_SPINCOUNT = "20000";
}

/** Loads the addon; only the ANE worker process calls this, never the kernel. */
export function loadAddon(path = NATIVE_ADDON): NativeAddon {
  if (loaded) return loaded;
  if (!existsSync(path)) {
    throw new UserFacingError(`The native addon is not built (${path} is missing); run \`npm run setup\` to build it.`);
  }
  waitPolicy(process.env);
  loaded = createRequire(import.meta.url)(path) as NativeAddon;
  return loaded;
}
