/**
 * The shapes of the MLX bridge's results and events (docs/bridge-protocol.md, version 1).
 * The wire carries plain JSON; these types are what the kernel relies on after a call.
 */

/** The CPU as the bridge's native code sees it (python-bridge/tunelab_bridge/cpu.py). */
export interface CpuInfo {
  name: string;
  machine: string;
  /** "x86-64-v4" (AVX-512), "x86-64-v3" (AVX2 + FMA), "x86-64-v2" (SSE4.2), or the machine name elsewhere. */
  level: string;
  features: string[];
  /** "AMD EPYC (x86-64-v3: AVX2 FMA3 AVX SSE42, no AVX-512)": what a figure was measured on. */
  summary: string;
}

/** One BLAS library the bridge checked on this CPU before choosing (python-bridge/tunelab_bridge/blas/). */
export interface BlasCandidate {
  name: string;
  origin: string;
  path: string | null;
  available: boolean;
  /** Passed its check on this CPU: loaded in a child, products and an inverse right, no fault. */
  ok: boolean;
  chosen: boolean;
  /** Why it is unavailable or failed ("killed by SIGILL (an illegal instruction: ...)"). */
  reason: string | null;
  gflops: number | null;
  size: number | null;
  config: string | null;
  core: string | null;
}

export interface BlasInfo {
  /** "OpenBLAS 0.3.21", or the reference BLAS, or Accelerate. */
  name: string;
  /** The candidate chosen ("system-openblas", "scipy-openblas32", "cmeel-openblas", "reference", "custom"). */
  library?: string;
  origin?: string;
  path: string | null;
  /** "DYNAMIC_ARCH" (kernels picked at run time) or "<core> only"; null for a non-OpenBLAS. */
  build?: string | null;
  /** The kernels OpenBLAS picked on this CPU ("Zen", "Haswell", "SkylakeX"...). */
  core?: string | null;
  /** sgemm rate measured by the check on this CPU, at `size` x `size`. */
  gflops: number | null;
  size?: number | null;
  threads?: number | null;
  /** True for the netlib reference BLAS bundled with the mlx-cpu wheel (about 9x slower). */
  reference: boolean;
  /** What is slow or failed, and how to fix it. */
  warning?: string | null;
  cpu?: CpuInfo;
  candidates?: BlasCandidate[];
  checked_at?: string;
}

export interface ModelInfo {
  name: string;
  path: string;
  model_type: string;
  num_layers: number;
  hidden_size: number;
  vocab_size: number;
  parameters: number;
  dtype: string;
  quantized: boolean;
  load_seconds: number;
}

export interface BridgeStatus {
  version: string;
  protocol: number;
  mlx: string;
  mlx_lm: string;
  device: string;
  blas: BlasInfo;
  model: ModelInfo | null;
  active_adapter: string | null;
  job: string | null;
  pid: number;
}

import type { OptimisationName } from "./params.generated.js";

export type { GenerateParams, OptimisationName, TuneParams } from "./params.generated.js";

export interface DataSource {
  /** Where the text came from (a file path or "cell"), named by the bridge in its errors. */
  source: string;
  text: string;
}

export interface ProgressEvent {
  step: number;
  iters: number;
  loss: number;
  lr: number;
  /** null before a timed step closes the first report's window. */
  it_per_s: number | null;
  tokens_per_s: number | null;
  trained_tokens: number;
  peak_memory_gb: number;
  elapsed_s: number;
}

export interface ValEvent {
  step: number;
  val_loss: number;
}

export interface EvalPair {
  prompt: string;
  before: string | null;
  after: string | null;
  /** Seconds each answer took (the engine %generate uses). */
  before_s?: number;
  after_s?: number;
}

export interface TuneResult {
  name: string;
  run_dir: string;
  adapter_path: string | null;
  status: "completed" | "interrupted";
  steps: number;
  iters: number;
  seconds: number;
  train_seconds: number;
  it_per_s: number;
  tokens_per_s: number;
  trained_tokens: number;
  trainable_params: number;
  total_params: number;
  first_loss: number | null;
  last_loss: number | null;
  val_loss: number | null;
  peak_memory_gb: number;
  evals: EvalPair[];
  model: ModelInfo;
  blas: BlasInfo;
  /** The adapter in llama.cpp's GGUF LoRA format, written beside it after training; null (with the reason) for a base llama.cpp has no adapter layout for. */
  gguf?: string | null;
  gguf_unavailable?: string;
  /** Set for a data-parallel run (--processes, --hosts): how many processes trained, over which backend. */
  processes?: number;
  backend?: string;
  /** Which speed-ups the run used; each one is switched off, with the reason, where it would not be exact. */
  optimisations: Partial<Record<OptimisationName, Optimisation>>;
}

export interface GenerateResult {
  text: string;
  tokens: number;
  prompt_tokens: number;
  /** Decode rate; prompt_tps is the prefill's. */
  tokens_per_s: number;
  prompt_tps: number;
  adapter: string | null;
  finish_reason: string;
  seconds: number;
  /** Which engine answered: llama.cpp on the CPU for the embedded model once it is built, else MLX. */
  engine: "llama.cpp" | "mlx";
  /** The engine in words (version, model file, threads). */
  engine_detail: string;
  /** Why MLX answered (only when it did). */
  engine_reason?: string | null;
  /** The answering engine putting the adapter in place: llama.cpp's adapter switch, or MLX's LoRA layers (0 when already in place). */
  switch_ms: number;
  /** llama.cpp: reading the adapter's GGUF file the first time it answers (0 afterwards). */
  adapter_load_ms?: number;
}

/** One directory under runs/ as the bridge describes it; fields beyond `name` vary by run state. */
export interface RunInfo {
  name: string;
  path: string;
  has_adapter: boolean;
  status: "completed" | "interrupted" | "incomplete" | null;
  steps: number | null;
  iters: number | null;
  model: string | null;
  last_loss: number | null;
  /** Seconds since the epoch. */
  modified: number | null;
}

/** What adapters.export wrote (python-bridge/tunelab_bridge/adapter_export.py). */
export interface AdapterExport {
  name: string;
  format: "gguf" | "peft" | "mlx";
  /** The .gguf file, or the directory of the PEFT / mlx-lm files. */
  path: string;
  files: { name: string; bytes: number }[];
}

export interface AdapterList {
  runs: RunInfo[];
  loaded: string[];
  active: string | null;
}

export interface Optimisation {
  used: boolean;
  /** Why it was switched off; null when used. */
  reason: string | null;
  detail: string | null;
}
