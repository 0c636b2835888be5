import { UsageError, UserFacingError } from "../errors.js";
import type { BridgeClient } from "../bridge/client.js";
import type { ProgressEvent, ValEvent } from "../bridge/types.js";
import { bridgeFor, modelArg } from "./bridge-context.js";
import { TUNE_FLAGS, tuneParams, type TuneFlagParams } from "./options.generated.js";
import { defineMagic, type MagicContext } from "./schema.js";
import { readCellBody, readDataFlag, readFileFlag } from "./tune-data.js";
import { TuneView, type TuneOutcome } from "./tune-view.js";

export type { TuneOutcome } from "./tune-view.js";

export const tuneMagic = defineMagic({
  name: "tune",
  summary: "fine-tune a language model with LoRA through MLX, with a live loss curve",
  description:
    "Trains a LoRA adapter on the examples given with --data (or in the body of %%tune, one JSON object per line: " +
    '{"messages": [...]}, {"prompt", "completion"} or {"text"}). The loss curve and progress update live; at the end a ' +
    "summary table and, for each --eval prompt, the answers before and after training. The adapter is saved under " +
    "runs/NAME and becomes the active adapter for %generate. Interrupting stops at the next step and keeps the partial adapter.",
  forms: { line: true, cell: true },
  flags: TUNE_FLAGS,
  body: { help: "JSONL training examples, one per line" },
  examples: [
    '%tune --data data/identity.jsonl --iters 80 --lr 2e-4 --eval "Who are you?"',
    "%%tune --iters 50 --lr 1e-4\n" + '{"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Quill."}]}',
  ],
  async run({ args, body }, ctx) {
    if (body !== undefined && args.data) throw new UsageError("Give the examples either in the %%tune cell body or with --data, not both.");
    if (body === undefined && !args.data) {
      throw new UsageError("%tune needs training examples: --data FILE.jsonl (or a directory with train.jsonl), or use %%tune with examples in the cell.");
    }
    if (args.resume && !args.name) throw new UsageError("--resume needs --name of the run to continue.");
    const params = tuneParams(args, {
      model: (value) => modelArg(value, ctx.cwd),
      data: (value) => (body !== undefined ? readCellBody(body) : readDataFlag(value!, ctx.cwd)),
      file: (value, flag) => readFileFlag(flag, value, ctx.cwd),
    });
    return runTune(bridgeFor(ctx), params, ctx);
  },
});

/** Runs one tune job with its live display; shared by `%tune` and the benchmarks. */
export async function runTune(bridge: BridgeClient, params: TuneFlagParams, ctx: Pick<MagicContext, "io">): Promise<TuneOutcome> {
  const view = new TuneView(ctx.io, params);
  const history: ProgressEvent[] = [];
  const valHistory: ValEvent[] = [];
  try {
    view.header(await bridge.status());
    const result = await bridge.tune(params, {
      signal: ctx.io.signal,
      onEvent: (e) => {
        if (e.event === "progress") {
          history.push(e.data);
          view.progress(e.data);
        } else if (e.event === "val") {
          valHistory.push(e.data);
          view.val(e.data);
        } else if (e.event === "phase") {
          view.phase(e.data.name, e.data.detail);
        } else if (e.event === "eval") {
          view.evalAnswer(e.data.prompt, e.data.when, e.data.text);
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
