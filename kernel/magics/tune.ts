import { resolve, join } from "node:path";
import { existsSync } from "node:fs";
import { UsageError, UserFacingError } from "../errors.js";
import { BRIDGE, type BridgeClient } from "../bridge/client.js";
import type { ProgressEvent, TuneParams, TuneResult, ValEvent } from "../bridge/types.js";
import { defineMagic, flag, type MagicContext } from "./schema.js";
import { loraKeys, readCellBody, readDataFlag } from "./tune-data.js";
import { TuneView } from "./tune-view.js";

/** What `%tune` returns to TypeScript (`tunelab.results.tune`): the bridge's result plus the curves as rows. */
export interface TuneOutcome extends TuneResult {
  history: ProgressEvent[];
  val_history: ValEvent[];
}

/** The bridge for this notebook; its runs/ directory is the notebook's. */
export function bridgeFor(ctx: MagicContext): BridgeClient {
  const bridge = ctx.services.get(BRIDGE);
  bridge.setRunsDir(join(ctx.cwd, "runs"));
  return bridge;
}

/** A model given as a path is resolved against the notebook; anything else is a name the bridge resolves. */
export function modelArg(model: string | undefined, cwd: string): string | null {
  if (!model || model === "default") return null;
  const path = resolve(cwd, model);
  return existsSync(path) ? path : model;
}

const flags = {
  model: flag.string({ help: "model directory or name (default: the embedded SmolLM2-135M-Instruct)", metavar: "PATH" }),
  data: flag.string({ help: "training examples: a .jsonl file (a sibling NAME-valid.jsonl adds validation loss) or a directory with train.jsonl [+ valid.jsonl]", metavar: "FILE" }),
  iters: flag.int({ help: "training steps", default: 200, min: 1 }),
  batchSize: flag.int({ help: "examples per step", default: 1, min: 1 }),
  lr: flag.number({ help: "Adam learning rate", default: 5e-5, min: 0, exclusiveMin: true, metavar: "RATE" }),
  rank: flag.int({ help: "LoRA rank", default: 8, min: 1, max: 1024 }),
  scale: flag.number({ help: "LoRA scale (plays the role of PEFT's alpha/r)", default: 20, min: 0, exclusiveMin: true }),
  dropout: flag.number({ help: "LoRA dropout", default: 0, min: 0, max: 0.99 }),
  layers: flag.int({ help: "adapt the last N transformer blocks", default: 4, min: 1 }),
  keys: flag.list("string", { help: "layers inside a block to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or full paths)", default: ["q_proj", "v_proj"] }),
  gradClip: flag.number({ help: "clip the gradient norm to this value (0 turns clipping off)", default: 1.0, min: 0 }),
  maxSeqLength: flag.int({ help: "truncate examples to this many tokens", default: 2048, min: 8 }),
  seed: flag.int({ help: "random seed", default: 0, min: 0 }),
  name: flag.string({ help: "run name (runs/NAME); default: timestamped", metavar: "NAME" }),
  saveEvery: flag.int({ help: "checkpoint every N steps (0: only at the end)", default: 100, min: 0 }),
  resume: flag.boolean({ help: "continue the run --name from its last checkpoint" }),
  repeat: flag.int({ help: "repeat the training examples N times (small datasets)", default: 1, min: 1 }),
  eval: flag.repeated({ help: "a prompt answered before and after training, shown side by side (repeatable)", metavar: "PROMPT" }),
  evalMaxTokens: flag.int({ help: "tokens generated for each --eval answer", default: 40, min: 1 }),
  noPrefixCache: flag.boolean({ help: "turn off the frozen-prefix cache (train exactly like mlx-lm)" }),
  prefixCacheMb: flag.int({ help: "memory budget of the frozen-prefix cache in MB; examples that do not fit are computed at every step (default 1024)", min: 0, metavar: "MB" }),
};

export const tuneMagic = defineMagic({
  name: "tune",
  summary: "fine-tune a language model with LoRA through MLX, with a live loss curve",
  description:
    "Trains a LoRA adapter on the examples given with --data (or in the body of %%tune, one JSON object per line: " +
    '{"messages": [...]}, {"prompt", "completion"} or {"text"}). The loss curve and progress update live; at the end a ' +
    "summary table and, for each --eval prompt, the answers before and after training. The adapter is saved under " +
    "runs/NAME and becomes the active adapter for %generate. Interrupting stops at the next step and keeps the partial adapter.",
  forms: { line: true, cell: true },
  flags,
  body: { help: "JSONL training examples, one per line" },
  examples: [
    '%tune --data data/identity.jsonl --iters 80 --lr 2e-4 --eval "Who are you?"',
    "%%tune --iters 50 --lr 1e-4\n" + '{"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Quill."}]}',
  ],
  async run({ args, body }, ctx) {
    let data;
    if (body !== undefined) {
      if (args.data) throw new UsageError("Give the examples either in the %%tune cell body or with --data, not both.");
      data = readCellBody(body);
    } else {
      if (!args.data) throw new UsageError("%tune needs training examples: --data FILE.jsonl (or a directory with train.jsonl), or use %%tune with examples in the cell.");
      data = readDataFlag(args.data, ctx.cwd);
    }
    if (args.resume && !args.name) throw new UsageError("--resume needs --name of the run to continue.");
    const params: TuneParams = {
      model: modelArg(args.model, ctx.cwd),
      data,
      name: args.name ?? null,
      iters: args.iters,
      batch_size: args.batchSize,
      lr: args.lr,
      rank: args.rank,
      scale: args.scale,
      dropout: args.dropout,
      layers: args.layers,
      keys: loraKeys(args.keys),
      grad_clip: args.gradClip,
      max_seq_length: args.maxSeqLength,
      seed: args.seed,
      save_every: args.saveEvery,
      resume: args.resume,
      repeat: args.repeat,
      mask_prompt: true,
      eval_prompts: args.eval,
      eval_max_tokens: args.evalMaxTokens,
      steps_per_report: 1,
      steps_per_eval: data.valid ? Math.max(1, Math.round(args.iters / 10)) : null,
      prefix_cache: !args.noPrefixCache,
      prefix_cache_mb: args.prefixCacheMb ?? null,
    };
    return runTune(bridgeFor(ctx), params, ctx);
  },
});

/** Runs one tune job with its live display; shared by `%tune` and the benchmarks. */
export async function runTune(bridge: BridgeClient, params: TuneParams, ctx: Pick<MagicContext, "io">): Promise<TuneOutcome> {
  const view = new TuneView(ctx.io, params);
  const history: ProgressEvent[] = [];
  const valHistory: ValEvent[] = [];
  try {
    view.header(await bridge.status());
    const result = await bridge.tune(params, {
      signal: ctx.io.signal,
      onEvent: (event, data) => {
        if (event === "progress") {
          const progress = data as unknown as ProgressEvent;
          history.push(progress);
          view.progress(progress);
        } else if (event === "val") {
          const val = data as unknown as ValEvent;
          valHistory.push(val);
          view.val(val);
        } else if (event === "phase") {
          view.phase(String(data.name ?? ""), typeof data.detail === "string" ? data.detail : undefined);
        } else if (event === "eval") {
          view.evalAnswer(String(data.prompt ?? ""), data.when === "after" ? "after" : "before", String(data.text ?? ""));
        }
      },
    });
    const outcome: TuneOutcome = { ...result, history, val_history: valHistory };
    view.finish(outcome);
    return outcome;
  } catch (error) {
    view.fail(error instanceof UserFacingError ? error.message : String(error));
    throw error;
  }
}
