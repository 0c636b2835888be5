// Written by `npm run generate` from python-bridge/tunelab_bridge/options.py; edit that file, not this one.

import type { FileText, AdaptersExportParams, GenerateParams, SyncCostParams, TuneParams } from "../bridge/params.generated.js";
import { flag, type ArgsOf } from "./schema.js";

/** How a magic turns the flags whose values need the notebook into wire fields. */
export interface WireResolvers<Data = never> {
  /** A path is resolved against the notebook; anything else is a name for the bridge. */
  model(value: string | undefined): string | null;
  data(value: string | undefined): Data;
  /** A file read by the kernel and sent as text, or null when the flag is not given. */
  file(value: string | undefined, flag: string): FileText | null;
  /** A path for the bridge to write to, resolved against the notebook, or null when not given. */
  path(value: string | undefined): string | null;
}

/** %tune's flags: TuneOptions in python-bridge/tunelab_bridge/options.py. */
export const TUNE_FLAGS = {
  model: flag.string({ help: "model directory or name (default: the embedded SmolLM2-135M-Instruct)", metavar: "PATH" }),
  data: flag.string({ help: "training examples: a .jsonl file (a sibling NAME-valid.jsonl adds validation loss) or a directory with train.jsonl [+ valid.jsonl]", metavar: "FILE" }),
  name: flag.string({ help: "run name (runs/NAME); default: timestamped", metavar: "NAME" }),
  iters: flag.int({ help: "training steps", default: 200, min: 1 }),
  batchSize: flag.int({ help: "examples per step", default: 1, min: 1 }),
  lr: flag.number({ help: "Adam learning rate", default: 5e-05, min: 0, exclusiveMin: true, metavar: "RATE" }),
  warmup: flag.int({ help: "raise the learning rate linearly from 0 over the first N steps (0: none)", default: 0, min: 0 }),
  rank: flag.int({ help: "LoRA rank", default: 8, min: 1, max: 1024 }),
  scale: flag.number({ help: "LoRA scale (plays the role of PEFT's alpha/r)", default: 20.0, min: 0, exclusiveMin: true }),
  dropout: flag.number({ help: "LoRA dropout", default: 0.0, min: 0, max: 0.99 }),
  layers: flag.int({ help: "adapt the last N transformer blocks", default: 4, min: 1 }),
  keys: flag.list("string", { help: "layers inside a block to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or paths such as self_attn.q_proj)", default: ["q_proj", "v_proj"] }),
  gradClip: flag.number({ help: "clip the gradient norm to this value (0 turns clipping off)", default: 1.0, min: 0 }),
  maxSeqLength: flag.int({ help: "truncate examples to this many tokens", default: 2048, min: 8 }),
  seed: flag.int({ help: "random seed (LoRA initialisation, batch order)", default: 0, min: 0 }),
  saveEvery: flag.int({ help: "checkpoint every N steps (0: only at the end)", default: 100, min: 0 }),
  resume: flag.boolean({ help: "continue the run --name from its last checkpoint" }),
  repeat: flag.int({ help: "repeat the training examples N times (small datasets)", default: 1, min: 1 }),
  eval: flag.repeated({ help: "a prompt answered before and after training, shown side by side (repeatable)", metavar: "PROMPT" }),
  evalMaxTokens: flag.int({ help: "tokens generated for each --eval answer", default: 40, min: 1 }),
  noPrefixCache: flag.boolean({ help: "turn off the frozen-prefix cache (train exactly like mlx-lm)" }),
  prefixCacheMb: flag.int({ help: "memory budget of the frozen-prefix cache in MB; examples that do not fit are computed at every step (default 1024)", min: 0, metavar: "MB" }),
  processes: flag.int({ help: "train data-parallel in N processes on this machine (mlx.launch, ring backend over loopback); --batch-size must split over them", default: 1, min: 1, max: 64 }),
  hosts: flag.string({ help: "train data-parallel across the machines of an mlx.launch hostfile (JSON), started from the bridge's machine; --batch-size must split over them", metavar: "FILE" }),
  backend: flag.string({ help: "mlx.launch's backend for --processes/--hosts: ring (TCP, every CPU), mpi, jaccl (RDMA over Thunderbolt 5), nccl (CUDA)", default: "ring", choices: ["ring", "mpi", "jaccl", "nccl"] }),
};

/** What %tune's flags put on the wire: every field they set, defaults applied. */
export type TuneFlagParams = Required<Omit<TuneParams, "mask_prompt" | "steps_per_report" | "steps_per_eval">>;

/** The wire fields %tune's flags set (mask_prompt, steps_per_report, steps_per_eval: the magic's own business). */
export function tuneParams(args: ArgsOf<typeof TUNE_FLAGS>, resolve: Pick<WireResolvers<TuneParams["data"]>, "model" | "data" | "file">): TuneFlagParams {
  return {
    model: resolve.model(args.model),
    data: resolve.data(args.data),
    name: args.name ?? null,
    iters: args.iters,
    batch_size: args.batchSize,
    lr: args.lr,
    warmup: args.warmup,
    rank: args.rank,
    scale: args.scale,
    dropout: args.dropout,
    layers: args.layers,
    keys: [...args.keys],
    grad_clip: args.gradClip,
    max_seq_length: args.maxSeqLength,
    seed: args.seed,
    save_every: args.saveEvery,
    resume: args.resume,
    repeat: args.repeat,
    eval_prompts: [...args.eval],
    eval_max_tokens: args.evalMaxTokens,
    prefix_cache: !args.noPrefixCache,
    prefix_cache_mb: args.prefixCacheMb ?? null,
    processes: args.processes,
    hosts: resolve.file(args.hosts, "hosts"),
    backend: args.backend,
  };
}

/** %generate's flags: GenerateOptions in python-bridge/tunelab_bridge/options.py. */
export const GENERATE_FLAGS = {
  adapter: flag.string({ help: "adapter to use: a run name, or none (base) for the base model (default: keep the active one); several, comma-separated, answer side by side", metavar: "NAME" }),
  maxTokens: flag.int({ help: "most tokens to generate", default: 200, min: 1 }),
  temp: flag.number({ help: "sampling temperature (0: greedy)", default: 0.0, min: 0 }),
  topP: flag.number({ help: "nucleus sampling probability mass", default: 1.0, min: 0, max: 1, exclusiveMin: true }),
  seed: flag.int({ help: "random seed for sampling (default 0)", min: 0 }),
  system: flag.string({ help: "system prompt (default: the model's own)", metavar: "TEXT" }),
  model: flag.string({ help: "model directory or name (default: the loaded one, else the embedded SmolLM2)", metavar: "PATH" }),
  engine: flag.string({ help: "what generates: auto (llama.cpp on the CPU for the embedded model once built, else MLX), mlx or llama.cpp", default: "auto", metavar: "ENGINE", choices: ["auto", "mlx", "llama.cpp"] }),
};

/** What %generate's flags put on the wire: every field they set, defaults applied. */
export type GenerateFlagParams = Required<Omit<GenerateParams, "prompt">>;

/** The wire fields %generate's flags set (prompt: the magic's own business). */
export function generateParams(args: ArgsOf<typeof GENERATE_FLAGS>, resolve: Pick<WireResolvers, "model">): GenerateFlagParams {
  return {
    adapter: args.adapter ?? null,
    max_tokens: args.maxTokens,
    temp: args.temp,
    top_p: args.topP,
    seed: args.seed ?? null,
    system: args.system ?? null,
    model: resolve.model(args.model),
    engine: args.engine,
  };
}

/** %sync_cost's flags: SyncCostOptions in python-bridge/tunelab_bridge/options.py. */
export const SYNC_COST_FLAGS = {
  processes: flag.int({ help: "processes in the group (mlx.launch, ring backend over loopback)", default: 2, min: 2, max: 64 }),
  rank: flag.int({ help: "LoRA rank of the adapter whose gradients are measured", default: 8, min: 1, max: 1024 }),
  layers: flag.int({ help: "adapted blocks (the last N), as %tune --layers", default: 4, min: 1 }),
  reps: flag.int({ help: "timed all-reduces of each size (their median is shown)", default: 3, min: 1, max: 100 }),
  model: flag.string({ help: "model directory or name (default: the loaded one, else the embedded SmolLM2)", metavar: "PATH" }),
};

/** What %sync_cost's flags put on the wire: every field they set, defaults applied. */
export type SyncCostFlagParams = Required<SyncCostParams>;

/** The wire fields %sync_cost's flags set. */
export function syncCostParams(args: ArgsOf<typeof SYNC_COST_FLAGS>, resolve: Pick<WireResolvers, "model">): SyncCostFlagParams {
  return {
    processes: args.processes,
    rank: args.rank,
    layers: args.layers,
    reps: args.reps,
    model: resolve.model(args.model),
  };
}

/** %adapters_export's flags: AdaptersExportOptions in python-bridge/tunelab_bridge/options.py. */
export const ADAPTERS_EXPORT_FLAGS = {
  export: flag.string({ help: "write this run's adapter in another engine's format (with --format, --to)", metavar: "NAME" }),
  format: flag.string({ help: "with --export: gguf (llama.cpp, Ollama's ADAPTER), peft (Hugging Face PEFT) or mlx (mlx-lm); default gguf", metavar: "FORMAT", choices: ["gguf", "peft", "mlx"] }),
  to: flag.string({ help: "with --export: where to write (a .gguf file or a directory; default: inside the run's directory)", metavar: "PATH" }),
};

/** What %adapters_export's flags put on the wire: every field they set, defaults applied. */
export type AdaptersExportFlagParams = Required<AdaptersExportParams>;

/** The wire fields %adapters_export's flags set. */
export function adaptersExportParams(args: ArgsOf<typeof ADAPTERS_EXPORT_FLAGS>, resolve: Pick<WireResolvers, "path">): AdaptersExportFlagParams {
  return {
    name: args.export ?? null,
    format: args.format ?? null,
    to: resolve.path(args.to),
  };
}
