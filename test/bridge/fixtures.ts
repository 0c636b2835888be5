import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BRIDGE_PYTHON, CACHE_DIR, PACKAGE_ROOT } from "../../kernel/paths.js";
import type { TuneParams } from "../../kernel/bridge/types.js";
import type { DisplayOutput, Displayable } from "../../kernel/display/mime.js";
import { toDisplayOutput } from "../../kernel/display/mime.js";
import type { CellIO, DisplayHandle } from "../../kernel/session/cell-io.js";

export const bridgeInstalled = existsSync(BRIDGE_PYTHON);

/** The embedded SmolLM2 converted by `tunelab setup` (needed only by the end-to-end identity test). */
export const defaultModelDir = join(CACHE_DIR, "models", "SmolLM2-135M-Instruct");

let tinyModel: string | undefined;

/** A 4-block Llama with a 400-token BPE tokenizer, built once per test process (about 2 s). */
export function tinyModelDir(): string {
  if (tinyModel) return tinyModel;
  const dir = join(mkdtempSync(join(tmpdir(), "tunelab-tiny-")), "tiny-llama");
  execFileSync(BRIDGE_PYTHON, [join(PACKAGE_ROOT, "test", "bridge", "fixtures", "make_tiny_model.py"), dir], { stdio: "pipe" });
  tinyModel = dir;
  return dir;
}

/** A small %tune on the identity data (20 steps, rank 4, last 2 blocks); override what a test needs. */
export function tuneParams(model: string, overrides: Partial<TuneParams> = {}): TuneParams {
  const text = readFileSync(join(PACKAGE_ROOT, "data", "identity.jsonl"), "utf8");
  return {
    model,
    data: { train: { source: "data/identity.jsonl", text }, valid: null },
    name: null,
    iters: 20,
    batch_size: 1,
    lr: 1e-3,
    rank: 4,
    scale: 20,
    dropout: 0,
    layers: 2,
    keys: ["self_attn.q_proj", "self_attn.v_proj"],
    grad_clip: 1,
    max_seq_length: 256,
    seed: 0,
    save_every: 0,
    resume: false,
    repeat: 1,
    mask_prompt: true,
    eval_prompts: [],
    eval_max_tokens: 8,
    steps_per_report: 1,
    steps_per_eval: null,
    prefix_cache: true,
    ...overrides,
  };
}

export function tempDir(prefix = "tunelab-bridge-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface Recorded {
  id: string;
  outputs: DisplayOutput[];
}

/** A CellIO that records every display and its updates, as a notebook would show them. */
export class RecordingIO implements CellIO {
  readonly displays: Recorded[] = [];
  readonly streams: Array<{ name: "stdout" | "stderr"; text: string }> = [];
  private readonly controller = new AbortController();
  private next = 1;

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  interrupt(): void {
    this.controller.abort();
  }

  stdout(text: string): void {
    this.streams.push({ name: "stdout", text });
  }

  stderr(text: string): void {
    this.streams.push({ name: "stderr", text });
  }

  display(output: DisplayOutput | Displayable, options: { id?: string } = {}): DisplayHandle {
    const record: Recorded = { id: options.id ?? `d${this.next++}`, outputs: [toDisplayOutput(output)] };
    this.displays.push(record);
    return {
      id: record.id,
      update: (o) => {
        record.outputs.push(toDisplayOutput(o));
      },
    };
  }

  clearOutput(): void {}

  /** The latest text/plain of every display, in order. */
  texts(): string[] {
    return this.displays.map((d) => String(d.outputs[d.outputs.length - 1]!.data["text/plain"] ?? ""));
  }
}
