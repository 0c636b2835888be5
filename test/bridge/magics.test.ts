import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MagicRegistry } from "../../kernel/magics/registry.js";
import { MAGICS } from "../../kernel/magics/index.js";
import type { MagicContext } from "../../kernel/magics/schema.js";
import { Services } from "../../kernel/session/services.js";
import { UsageError, UserFacingError } from "../../kernel/errors.js";
import { PACKAGE_ROOT } from "../../kernel/paths.js";
import type { TuneOutcome } from "../../kernel/magics/tune.js";
import type { AdaptersOutcome } from "../../kernel/magics/adapters.js";
import type { AdapterList, GenerateResult } from "../../kernel/bridge/types.js";
import { bridgeInstalled, RecordingIO, tempDir, tinyModelDir } from "./fixtures.js";

const registry = new MagicRegistry(MAGICS);

/** Runs one magic line (or a %% cell) the way the session does, with a recording cell. */
async function magic(source: string, ctx: Omit<MagicContext, "io">, io = new RecordingIO()) {
  const [segment] = registry.parseCell(source);
  if (!segment || segment.kind === "code") throw new Error(`not a magic: ${source}`);
  const outcome = await registry.run(segment, { ...ctx, io });
  return { value: outcome.value, io };
}

async function failure(source: string, ctx: Omit<MagicContext, "io">): Promise<Error> {
  const error = await magic(source, ctx).then(
    () => new Error("expected the magic to fail"),
    (e: Error) => e,
  );
  return error;
}

function expectOneSentence(error: Error): void {
  expect(error).toBeInstanceOf(UserFacingError);
  expect(error.message).not.toMatch(/\n|Traceback|at .*\.ts:/);
  expect(error.message.length).toBeLessThan(400);
}

describe("%tune usage errors (no bridge needed)", () => {
  const cwd = tempDir();
  const ctx = { services: new Services(), cwd, evaluate: async () => undefined };

  afterAll(() => ctx.services.disposeAll());

  it("names a missing data file", async () => {
    const error = await failure("%tune --data nowhere.jsonl", ctx);
    expect(error).toBeInstanceOf(UsageError);
    expectOneSentence(error);
    expect(error.message).toContain(join(cwd, "nowhere.jsonl"));
  });

  it("asks for data when none is given", async () => {
    const error = await failure("%tune --iters 5", ctx);
    expectOneSentence(error);
    expect(error.message).toMatch(/needs training examples/);
  });

  it("rejects a bad flag value with the flag's name", async () => {
    const error = await failure("%tune --data one.jsonl --lr fast", ctx);
    expect(error).toBeInstanceOf(UsageError);
    expectOneSentence(error);
    expect(error.message).toMatch(/--lr/);
    expect(error.message).toMatch(/fast/);
  });

  it("rejects an empty %%tune body", async () => {
    const error = await failure("%%tune --iters 3\n\n", ctx);
    expectOneSentence(error);
  });

  it("%generate needs a prompt", async () => {
    const error = await failure("%generate --max-tokens 3", ctx);
    expectOneSentence(error);
  });
});

describe.skipIf(!bridgeInstalled)("%tune, %generate and %adapters on the real bridge", () => {
  let cwd: string;
  let model: string;
  let ctx: Omit<MagicContext, "io">;

  beforeAll(() => {
    model = tinyModelDir();
    cwd = tempDir();
    mkdirSync(join(cwd, "data"));
    copyFileSync(join(PACKAGE_ROOT, "data", "identity.jsonl"), join(cwd, "data", "identity.jsonl"));
    copyFileSync(join(PACKAGE_ROOT, "data", "identity-valid.jsonl"), join(cwd, "data", "identity-valid.jsonl"));
    writeFileSync(join(cwd, "data", "broken.jsonl"), '{"text": "fine"}\n{"text": "missing quote}\n');
    ctx = { services: new Services(), cwd, evaluate: async () => undefined };
  });

  afterAll(async () => {
    await ctx?.services.disposeAll();
  });

  it("names the file and line of a malformed JSONL row", async () => {
    const error = await failure(`%tune --model ${model} --data data/broken.jsonl --iters 2`, ctx);
    expectOneSentence(error);
    expect(error.message).toContain("broken.jsonl");
    expect(error.message).toMatch(/line 2/);
  });

  it("names an unknown LoRA key and the model's own, before training", async () => {
    // The bridge checks --keys against the blocks of the model it loaded (short names like
    // q_proj are that model's one *.q_proj), so a model with other projection names is not refused.
    const error = await failure(`%tune --model ${model} --data data/identity.jsonl --keys q_proj,wq --iters 2 --name bad-keys`, ctx);
    expectOneSentence(error);
    expect(error.message).toMatch(/unknown LoRA key wq; this model's blocks have .*self_attn\.q_proj/);
    expect(existsSync(join(cwd, "runs", "bad-keys"))).toBe(false);
  });

  it("says so in one sentence when the model cannot be loaded", async () => {
    const error = await failure(`%tune --model ${join(cwd, "no-such-model")} --data data/identity.jsonl --iters 2`, ctx);
    expectOneSentence(error);
    expect(error.message).toMatch(/no-such-model/);
    const empty = join(cwd, "empty-model");
    mkdirSync(empty);
    writeFileSync(join(empty, "config.json"), "{}");
    const broken = await failure(`%tune --model ${empty} --data data/identity.jsonl --iters 2`, ctx);
    expectOneSentence(broken);
  });

  it("trains with a live curve, a summary, before/after answers, and returns the run with its loss history", async () => {
    const { value, io } = await magic(
      `%tune --model ${model} --data data/identity.jsonl --iters 30 --lr 2e-3 --layers 2 --name tiny-identity --eval "Who are you?" --eval-max-tokens 6`,
      ctx,
    );
    const outcome = value as TuneOutcome;
    expect(outcome.status).toBe("completed");
    expect(outcome.steps).toBe(30);
    expect(outcome.history).toHaveLength(30);
    expect(outcome.history.map((p) => p.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(outcome.val_history.length).toBeGreaterThan(0);
    expect(outcome.last_loss!).toBeLessThan(outcome.first_loss!);
    expect(existsSync(join(cwd, "runs", "tiny-identity", "adapters.safetensors"))).toBe(true);
    expect(outcome.evals).toHaveLength(1);
    expect(outcome.evals[0]!.prompt).toBe("Who are you?");

    // One live display updated in place, then the summary and the before/after table.
    const [live, summary, evals] = io.displays;
    expect(io.displays).toHaveLength(3);
    expect(live!.outputs.length).toBeGreaterThanOrEqual(2); // first paint and final repaint; more when training is slow enough to throttle
    const final = live!.outputs[live!.outputs.length - 1]!.data;
    expect(String(final["text/plain"])).toMatch(/completed 30 steps/);
    expect(String(final["text/plain"])).toMatch(/BLAS /);
    expect(String(final["text/html"])).toContain("tunelab-figure");
    expect(String(final["text/html"])).toContain("tunelabLoadPlotly");
    // The saved output shows the curve where no HTML runs too (GitHub, nbviewer, a Plotly renderer).
    expect(String(final["image/svg+xml"])).toMatch(/^<svg/);
    expect(final["application/vnd.plotly.v1+json"]).toBeDefined();
    const summaryText = String(summary!.outputs[0]!.data["text/plain"]);
    expect(summaryText).toMatch(/trainable params/);
    // The tiny model adapts its last 2 of 4 blocks: the frozen prefix is cached and the table says so.
    expect(outcome.optimisations.prefix_cache?.used).toBe(true);
    expect(summaryText).toMatch(/prefix cache\s+used/);
    expect(summaryText).toContain("tiny-identity");
    expect(String(evals!.outputs[0]!.data["text/plain"])).toMatch(/before\s+after/);
  });

  it("generates with the trained adapter, streaming into one display", async () => {
    const { value, io } = await magic("%generate --max-tokens 8 Who are you?", ctx);
    const result = value as GenerateResult;
    expect(result.tokens).toBeGreaterThan(0);
    expect(result.adapter).toBe("tiny-identity");
    expect(io.displays).toHaveLength(1);
    expect(io.texts()[0]).toMatch(/tokens\/s/);
    // The footer names the engine: the tiny model is an MLX directory, so MLX answers and says why.
    expect(result.engine).toBe("mlx");
    expect(io.texts()[0]).toMatch(/· mlx \(.*MLX model directory\)/);
    const base = (await magic("%generate --adapter base --max-tokens 8 Who are you?", ctx)).value as GenerateResult;
    expect(base.adapter).toBeFalsy();
  });

  it("answers one prompt with several adapters side by side, each as itself, and leaves the active one as it was", async () => {
    // Two identities the tiny model learns by heart, each from one example.
    for (const [name, answer] of [["ada", "Ada Ada Ada"], ["bob", "Bob Bob Bob"]] as const) {
      writeFileSync(join(cwd, "data", `${name}.jsonl`), JSON.stringify({ prompt: "Who are you?", completion: answer }) + "\n");
      const tuned = (await magic(`%tune --model ${model} --data data/${name}.jsonl --iters 80 --lr 2e-2 --layers 4 --name ${name}`, ctx)).value as TuneOutcome;
      expect(tuned.status).toBe("completed");
    }
    await magic("%adapters --use ada", ctx);
    const { value, io } = await magic("%generate --adapter base,ada,bob --max-tokens 12 Who are you?", ctx);
    const answers = value as GenerateResult[];
    expect(answers.map((a) => a.adapter)).toEqual([null, "ada", "bob"]);
    expect(answers[1]!.text).toMatch(/Ada/);
    expect(answers[1]!.text).not.toMatch(/Bob/);
    expect(answers[2]!.text).toMatch(/Bob/);
    expect(answers[2]!.text).not.toMatch(/Ada/);
    expect(answers[0]!.text).not.toMatch(/Ada|Bob/);
    for (const a of answers) expect(a.switch_ms).toBeGreaterThanOrEqual(0);
    // One table, repainted in place as the answers stream, with a row per adapter.
    expect(io.displays).toHaveLength(1);
    const shown = io.texts()[0]!;
    expect(shown).toMatch(/adapter\s+answer\s+tokens\s+tokens\/s\s+switch ms\s+engine/);
    expect(shown).toMatch(/^base\s/m);
    expect(shown).toMatch(/^bob\s+Bob/m);
    expect(((await magic("%adapters", ctx)).value as AdapterList).active).toBe("ada");
    // Going back to an adapter gives its earlier answer: nothing of the other stayed in the model.
    const again = (await magic("%generate --adapter bob,ada --max-tokens 12 Who are you?", ctx)).value as GenerateResult[];
    expect(again.map((a) => a.text)).toEqual([answers[2]!.text, answers[1]!.text]);
  });

  it("rejects a one-name comparison and --format without --export in one sentence", async () => {
    expectOneSentence(await failure("%generate --adapter ada, Who are you?", ctx));
    const error = await failure("%adapters --format peft", ctx);
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toMatch(/--format goes with --export/);
  });

  it("exports a trained adapter as GGUF, PEFT and mlx-lm files, each where asked", async () => {
    const gguf = (await magic("%adapters --export ada --to exported/ada.gguf", ctx)).value as AdaptersOutcome;
    expect(gguf.exported).toMatchObject({ name: "ada", format: "gguf", path: join(cwd, "exported", "ada.gguf") });
    expect(existsSync(join(cwd, "exported", "ada.gguf"))).toBe(true);
    const peft = await magic("%adapters --export ada --format peft --to exported/ada-peft", ctx);
    expect(readdirSync(join(cwd, "exported", "ada-peft")).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    expect(peft.io.texts()[0]).toMatch(/PeftModel\.from_pretrained/);
    const mlx = (await magic("%adapters --export ada --format mlx", ctx)).value as AdaptersOutcome;
    expect(mlx.exported!.path).toBe(join(cwd, "runs", "ada", "export-mlx"));
    // %tune wrote the GGUF form beside the adapter already.
    expect(existsSync(join(cwd, "runs", "ada", "adapter.gguf"))).toBe(true);
    const missing = await failure("%adapters --export nobody", ctx);
    expectOneSentence(missing);
    expect(missing.message).toMatch(/no adapter named 'nobody'/);
  });

  it("trains from the body of %%tune", async () => {
    const body = ['{"prompt": "2+2=", "completion": "4"}', '{"prompt": "3+3=", "completion": "6"}'].join("\n");
    const { value } = await magic(`%%tune --model ${model} --iters 4 --name from-cell\n${body}`, ctx);
    expect((value as TuneOutcome).status).toBe("completed");
  });

  it("lists runs and switches the active adapter", async () => {
    const { value, io } = await magic("%adapters", ctx);
    const list = value as AdapterList;
    expect(list.runs.map((r) => r.name)).toEqual(expect.arrayContaining(["tiny-identity", "from-cell"]));
    expect(io.texts()[0]).toContain("tiny-identity");
    const switched = (await magic("%adapters --use tiny-identity", ctx)).value as AdaptersOutcome;
    expect(switched.active).toBe("tiny-identity");
    // The switch's own timing comes back to TypeScript: the bridge's share within the round trip.
    expect(switched.switched).toMatchObject({ active: "tiny-identity" });
    expect(switched.switched!.ms).toBeGreaterThanOrEqual(0);
    expect(switched.switched!.round_trip_ms).toBeGreaterThanOrEqual(switched.switched!.ms);
    expect((await magic("%adapters", ctx)).value).not.toHaveProperty("switched");
    const none = (await magic("%adapters --use none", ctx)).value as AdapterList;
    expect(none.active).toBeNull();
  });

  it("stops at the next step on interrupt, keeps the partial adapter and says where it stopped", async () => {
    const io = new RecordingIO();
    const watcher = setInterval(() => {
      if (io.texts().some((t) => /step ([3-9]|\d\d+)\//.test(t))) io.interrupt();
    }, 20);
    try {
      const { value } = await magic(`%tune --model ${model} --data data/identity.jsonl --iters 100000 --name tiny-stopped`, ctx, io);
      const outcome = value as TuneOutcome;
      expect(outcome.status).toBe("interrupted");
      expect(outcome.steps).toBeLessThan(100000);
      expect(io.texts()[0]).toMatch(new RegExp(`interrupted at step ${outcome.steps}`));
      expect(existsSync(join(cwd, "runs", "tiny-stopped", "adapters.safetensors"))).toBe(true);
    } finally {
      clearInterval(watcher);
    }
  });
});
