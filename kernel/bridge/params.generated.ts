// Written by `npm run generate` from python-bridge/tunelab_bridge/options.py; edit that file, not this one.

import type { DataSource } from "./types.js";

/** A file the kernel read for the bridge: where it came from, and its text. */
export type FileText = DataSource;

/** The fast path's knobs as TuneResult.optimisations names them (FastOptions in python-bridge/tunelab_bridge/fast/plan.py). */
export type OptimisationName = "prefix_cache" | "loss_head" | "tail_queries" | "trim_padding" | "host_activations" | "fused_head" | "native_linears" | "host_attention" | "host_step" | "compile";

/** The params of the bridge's `tune` method (TuneOptions); a field left out takes the bridge's default. */
export interface TuneParams {
  /** model directory or name (default: the embedded SmolLM2-135M-Instruct) */
  model?: string | null;
  /** training examples: a .jsonl file (a sibling NAME-valid.jsonl adds validation loss) or a directory with train.jsonl [+ valid.jsonl] */
  data: { train: DataSource; valid: DataSource | null };
  /** run name (runs/NAME); default: timestamped */
  name?: string | null;
  /** training steps (default 200) */
  iters?: number;
  /** examples per step (default 1) */
  batch_size?: number;
  /** Adam learning rate (default 5e-05) */
  lr?: number;
  /** raise the learning rate linearly from 0 over the first N steps (0: none) (default 0) */
  warmup?: number;
  /** LoRA rank (default 8) */
  rank?: number;
  /** LoRA scale (plays the role of PEFT's alpha/r) (default 20.0) */
  scale?: number;
  /** LoRA dropout (default 0.0) */
  dropout?: number;
  /** adapt the last N transformer blocks (default 4) */
  layers?: number;
  /** layers inside a block to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or paths such as self_attn.q_proj) (default ["q_proj", "v_proj"]) */
  keys?: string[];
  /** clip the gradient norm to this value (0 turns clipping off) (default 1.0) */
  grad_clip?: number;
  /** truncate examples to this many tokens (default 2048) */
  max_seq_length?: number;
  /** random seed (LoRA initialisation, batch order) (default 0) */
  seed?: number;
  /** checkpoint every N steps (0: only at the end) (default 100) */
  save_every?: number;
  /** continue the run --name from its last checkpoint (default false) */
  resume?: boolean;
  /** repeat the training examples N times (small datasets) (default 1) */
  repeat?: number;
  /** a prompt answered before and after training, shown side by side (repeatable) (default []) */
  eval_prompts?: string[];
  /** tokens generated for each --eval answer (default 40) */
  eval_max_tokens?: number;
  /** whether --no-prefix-cache is absent: turn off the frozen-prefix cache (train exactly like mlx-lm) (default true) */
  prefix_cache?: boolean;
  /** memory budget of the frozen-prefix cache in MB; examples that do not fit are computed at every step (default 1024) */
  prefix_cache_mb?: number | null;
  /** train data-parallel in N processes on this machine (mlx.launch, ring backend over loopback); --batch-size must split over them (default 1) */
  processes?: number;
  /** train data-parallel across the machines of an mlx.launch hostfile (JSON), started from the bridge's machine; --batch-size must split over them */
  hosts?: FileText | null;
  /** mlx.launch's backend for --processes/--hosts: ring (TCP, every CPU), mpi, jaccl (RDMA over Thunderbolt 5), nccl (CUDA) (default "ring") */
  backend?: string;
  /** train on the answers only (the prompt's tokens carry no loss) (default true) */
  mask_prompt?: boolean;
  /** steps between progress events (default 1) */
  steps_per_report?: number;
  /** steps between validation passes (null: a tenth of the steps when there is validation data) */
  steps_per_eval?: number | null;
}

/** The params of the bridge's `generate` method (GenerateOptions); a field left out takes the bridge's default. */
export interface GenerateParams {
  /** the prompt (the free text after the flags, or the %%generate cell) (default "") */
  prompt: string;
  /** adapter to use: a run name, or none (base) for the base model (default: keep the active one); several, comma-separated, answer side by side */
  adapter?: string | null;
  /** most tokens to generate (default 200) */
  max_tokens?: number;
  /** sampling temperature (0: greedy) (default 0.0) */
  temp?: number;
  /** nucleus sampling probability mass (default 1.0) */
  top_p?: number;
  /** random seed for sampling (default 0) */
  seed?: number | null;
  /** system prompt (default: the model's own) */
  system?: string | null;
  /** model directory or name (default: the loaded one, else the embedded SmolLM2) */
  model?: string | null;
  /** what generates: auto (llama.cpp on the CPU for the embedded model once built, else MLX), mlx or llama.cpp (default "auto") */
  engine?: string;
}

/** The params of the bridge's `sync_cost` method (SyncCostOptions); a field left out takes the bridge's default. */
export interface SyncCostParams {
  /** processes in the group (mlx.launch, ring backend over loopback) (default 2) */
  processes?: number;
  /** LoRA rank of the adapter whose gradients are measured (default 8) */
  rank?: number;
  /** adapted blocks (the last N), as %tune --layers (default 4) */
  layers?: number;
  /** timed all-reduces of each size (their median is shown) (default 3) */
  reps?: number;
  /** model directory or name (default: the loaded one, else the embedded SmolLM2) */
  model?: string | null;
}

/** The params of the bridge's `adapters_export` method (AdaptersExportOptions); a field left out takes the bridge's default. */
export interface AdaptersExportParams {
  /** write this run's adapter in another engine's format (with --format, --to) */
  name?: string | null;
  /** with --export: gguf (llama.cpp, Ollama's ADAPTER), peft (Hugging Face PEFT) or mlx (mlx-lm); default gguf */
  format?: string | null;
  /** with --export: where to write (a .gguf file or a directory; default: inside the run's directory) */
  to?: string | null;
}
