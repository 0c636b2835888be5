import { describe, expect, it } from "vitest";
import { UsageError, UserFacingError } from "../../kernel/errors.js";
import { builtinMagics, type MagicListing } from "../../kernel/magics/builtins.js";
import { MagicRegistry, createDefaultRegistry } from "../../kernel/magics/registry.js";
import { MAGICS } from "../../kernel/magics/index.js";
import { helpOutput } from "../../kernel/magics/help.js";
import { parseArgs } from "../../kernel/magics/parse.js";
import { kebab } from "../../kernel/magics/words.js";
import type { FlagMap, MagicContext, MagicSpec } from "../../kernel/magics/schema.js";
import { toDisplayOutput } from "../../kernel/display/mime.js";
import { Services } from "../../kernel/session/services.js";
import { RecordingIO } from "../display/fake-io.js";
import { cellOnly, generateLike, tuneLike } from "./specs.js";

const specs = [...builtinMagics, tuneLike, generateLike, cellOnly] as unknown as MagicSpec<FlagMap>[];
const registry = new MagicRegistry(specs);

function context(evaluate: (code: string) => Promise<unknown> = async () => undefined): { ctx: MagicContext; io: RecordingIO } {
  const io = new RecordingIO();
  return { io, ctx: { io, services: new Services(), cwd: process.cwd(), evaluate } };
}

async function runLine(line: string, ctx = context().ctx) {
  const segment = registry.parseCell(line).find((s) => s.kind !== "code");
  if (!segment || segment.kind === "code") throw new Error(`not a magic: ${line}`);
  return registry.run(segment, ctx);
}

async function usage(line: string): Promise<string> {
  const error = await runLine(line).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UsageError);
  return (error as Error).message;
}

describe("MagicRegistry.run", () => {
  it("parses the declaration's flags and hands them to the magic", async () => {
    const outcome = await runLine("%tune --iters 7 --eval hi data.jsonl");
    expect(outcome).toMatchObject({ name: "tune", showsResult: false, value: { args: { iters: 7, eval: ["hi"] }, text: "data.jsonl", body: undefined } });
    const cell = await registry.run(registry.parseCell("%%tune --fast\n{\"prompt\": 1}")[0] as never, context().ctx);
    expect(cell.value).toMatchObject({ args: { fast: true }, body: '{"prompt": 1}' });
    expect((await runLine("%generate --max-tokens 20 Who are you?")).value).toMatchObject({ args: { maxTokens: 20 }, text: "Who are you?" });
  });

  it("names the closest magic for an unknown one", async () => {
    expect(await usage("%tun --iters 3")).toBe("unknown magic %tun; did you mean %tune?");
    expect(await usage("%%tme")).toBe("unknown magic %%tme; did you mean %%time?");
    expect(await usage("%qqqqqqq")).toBe("unknown magic %qqqqqqq; run %lsmagic to list the magics.");
  });

  it("says when a line magic is used as a cell magic and the reverse", async () => {
    expect(await usage("%%env X=1\nbody")).toBe("%env is a line magic, not a cell magic; write %env with a single %.");
    expect(await usage("%bench")).toBe("%%bench is a cell magic, not a line magic; put %%bench on the first line of the cell.");
    expect(await usage("let a = 1\n%%time")).toBe("%%time must be the first line of the cell; a cell magic takes the whole cell as its body.");
  });

  it("shows help for %name? built from the declaration", async () => {
    const { ctx, io } = context();
    const outcome = await runLine("%tune?", ctx);
    expect(outcome).toEqual({ value: undefined, showsResult: false, name: "tune" });
    const [shown] = io.displays();
    const plain = shown!.data["text/plain"] as string;
    expect(plain).toContain("%tune: Fine-tune a model with LoRA.");
    expect(plain).toContain("%tune [flags] [DATA]");
    expect(plain).toContain("%%tune [flags] [DATA]");
    expect(plain).toMatch(/--iters N\s+training steps \(default: 100; an integer between 1 and 100000\)/);
    expect(plain).toMatch(/--lr RATE\s+learning rate \(default: 0.0001; a positive number\)/);
    expect(plain).toMatch(/--backend \{ane,cpu\}\s+where to run \(default: cpu; one of ane, cpu\)/);
    expect(plain).toMatch(/--eval PROMPT\s+prompt generated before and after training \(may be given several times\)/);
    expect(plain).toContain("%tune --iters 50 data/identity.jsonl");
    const md = shown!.data["text/markdown"] as string;
    expect(md).toContain("| `--batch-size N` | examples per step | default: 4; a positive integer |");
    const asked = context();
    expect(await runLine("%generate --max-tokens 3 --help", asked.ctx)).toEqual({ value: undefined, showsResult: false, name: "generate" });
    expect(asked.io.displays()[0]!.data["text/plain"]).toContain("%generate: Generate text.");
    const cellHelp = context();
    await runLine("%%bench?", cellHelp.ctx);
    expect(cellHelp.io.displays()[0]!.data["text/plain"]).toContain("%%bench: Benchmark a cell.");
  });

  it("refuses a bad declaration when the kernel starts rather than when a cell runs", () => {
    const dup = { ...(tuneLike as unknown as MagicSpec<FlagMap>) };
    expect(() => new MagicRegistry([dup, dup])).toThrow(/declared twice/);
    expect(() => new MagicRegistry([{ ...dup, flags: { Bad: dup.flags.iters! } }])).toThrow(/camelCase/);
  });
});

describe("built-in magics", () => {
  it("%lsmagic returns the structured list and shows it as a table", async () => {
    const outcome = await runLine("%lsmagic");
    expect(outcome.showsResult).toBe(true);
    const list = outcome.value as MagicListing[];
    expect(list.map((m) => m.name)).toEqual(["bench", "env", "generate", "lsmagic", "tb", "time", "tune"]);
    expect(list.find((m) => m.name === "tune")).toEqual({ name: "tune", line: "%tune", cell: "%%tune", summary: "Fine-tune a model with LoRA." });
    expect(list.find((m) => m.name === "bench")).toMatchObject({ line: null, cell: "%%bench" });
    const shown = toDisplayOutput(list);
    expect(shown.data["text/html"]).toContain("<td style=\"text-align:left;padding:2px 10px\">%%tune</td>");
    expect(shown.data["text/plain"]).toContain("%generate");
    expect(JSON.parse(JSON.stringify(list))).toEqual(list);
    expect(await usage("%lsmagic extra")).toBe("%lsmagic takes no free text, got 'extra'.");
  });

  it("%time evaluates the expression verbatim, prints wall time and returns the value", async () => {
    const seen: string[] = [];
    const { ctx, io } = context(async (code) => {
      seen.push(code);
      return 42;
    });
    const outcome = await runLine("%time for (let i=0;i<3;i++) {}  ", ctx);
    expect(seen).toEqual(["for (let i=0;i<3;i++) {}"]);
    expect(outcome).toEqual({ value: 42, showsResult: true, name: "time" });
    expect(io.text()).toMatch(/^CPU times: user .+, sys .+, total .+\nWall time: \d+(\.\d+)? (µs|ms|s)\n$/);
    const cell = context(async (code) => (seen.push(code), "done"));
    const timed = await registry.run(registry.parseCell("%%time\nconst x = 1;\nx + 1")[0] as never, cell.ctx);
    expect(seen.at(-1)).toBe("const x = 1;\nx + 1");
    expect(timed.value).toBe("done");
    expect(await usage("%time")).toBe("%time needs an expression to time, e.g. %time 1 + 1.");
    expect(await usage("%%time")).toBe("%%time needs code to time in the cell body below the %%time line.");
    expect(await usage("%%time 1 + 1\nx")).toBe("%%time times the cell body, got '1 + 1' on the %%time line; move that code below it.");
  });

  it("%time lets the evaluated code's error through and prints no time", async () => {
    const { ctx, io } = context(async () => {
      throw new SyntaxError("bad code");
    });
    await expect(runLine("%time )(", ctx)).rejects.toThrow("bad code");
    expect(io.text()).toBe("");
  });

  it("%env lists, reads and sets variables that children inherit", async () => {
    const name = `TUNELAB_TEST_${process.pid}`;
    delete process.env[name];
    const { ctx, io } = context();
    expect((await runLine(`%env ${name}=hello world`, ctx)).value).toBeUndefined();
    expect(process.env[name]).toBe("hello world");
    expect(io.text()).toBe(`env: ${name}=hello world\n`);
    expect((await runLine(`%env ${name}`)).value).toBe("hello world");
    await runLine(`%env ${name} "second value"`);
    expect(process.env[name]).toBe("second value");
    const { execFileSync } = await import("node:child_process");
    expect(execFileSync(process.execPath, ["-e", `process.stdout.write(process.env.${name} ?? "")`]).toString()).toBe("second value");
    const all = (await runLine("%env")).value as Record<string, string>;
    expect(all[name]).toBe("second value");
    process.env.TUNELAB_TEST_SECRET_TOKEN = "s3cret";
    const listed = toDisplayOutput((await runLine("%env")).value);
    expect(listed.data["text/plain"]).toContain("TUNELAB_TEST_SECRET_TOKEN");
    expect(listed.data["text/plain"]).not.toContain("s3cret");
    delete process.env.TUNELAB_TEST_SECRET_TOKEN;
    const missing = await runLine(`%env ${name}_MISSING`).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(UserFacingError);
    expect((missing as Error).message).toBe(`environment variable ${name}_MISSING is not set; set it with %env ${name}_MISSING=VALUE.`);
    expect(await usage("%env 1BAD=x")).toBe("'1BAD' is not an environment variable name; use letters, digits and underscores, e.g. %env MY_VAR=1.");
    delete process.env[name];
  });
});

describe("completion and inspection", () => {
  const names = (code: string, cursor = code.length) => registry.complete(code, cursor);

  it("completes magic names after % and %%", () => {
    expect(names("%t")).toEqual({ matches: ["%%time", "%%tune", "%tb", "%time", "%tune"].filter((m) => m.startsWith("%t")), cursorStart: 0, cursorEnd: 2 });
    expect(names("%%t")?.matches).toEqual(["%%time", "%%tune"]);
    expect(names("const a = 1;\n  %ls")).toEqual({ matches: ["%lsmagic"], cursorStart: 15, cursorEnd: 18 });
    expect(names("%%b")?.matches).toEqual(["%%bench"]);
    expect(names("%b")?.matches).toEqual(["%%bench"].filter((m) => m.startsWith("%b")));
  });

  it("completes flags after -- and skips flags already given", () => {
    const code = "%tune --iters 3 --it";
    expect(names(code)).toEqual({ matches: [], cursorStart: code.length - 4, cursorEnd: code.length });
    expect(names("%tune --ba")?.matches).toEqual(["--backend", "--batch-size"]);
    expect(names("%tune --eval x --ev")?.matches).toEqual(["--eval"]);
    const all = names("%tune ")?.matches ?? [];
    expect(all).toContain("--iters");
    expect(all).toHaveLength(9);
  });

  it("completes the choices of a flag, both forms", () => {
    expect(names("%tune --backend ")?.matches).toEqual(["ane", "cpu"]);
    expect(names("%tune --backend c")).toEqual({ matches: ["cpu"], cursorStart: 16, cursorEnd: 17 });
    expect(names("%tune --backend=a")?.matches).toEqual(["--backend=ane"]);
    expect(names("%tune --iters ")?.matches).toEqual([]);
  });

  it("completes inside the line at the cursor, and not in free text or code", () => {
    expect(registry.complete("%tune --ba data.jsonl", 10)).toEqual({ matches: ["--backend", "--batch-size"], cursorStart: 6, cursorEnd: 10 });
    expect(names("%tune data.jsonl --ba")?.matches).toEqual([]);
    expect(names("const x = 1")).toBeNull();
    expect(names("%%time\n%ti")).toBeNull();
  });

  it("inspects the magic under the cursor", () => {
    const found = registry.inspect("x\n%generate --temp 1 hello", 5);
    expect(found?.data["text/plain"]).toContain("%generate: Generate text.");
    expect(found?.data["text/plain"]).toContain("%generate [--max-tokens N] [--temp X] PROMPT");
    expect(registry.inspect("%nope", 2)).toBeNull();
    expect(registry.inspect("const a = 1", 3)).toBeNull();
  });
});

describe("createDefaultRegistry", () => {
  it("knows the built-in magics", () => {
    const names = createDefaultRegistry().names();
    for (const name of ["lsmagic", "time", "env"]) expect(names).toContain(name);
  });
});

describe("the kernel's own magics", () => {
  const kernel = new MagicRegistry(MAGICS);

  it("each have help built from their declaration", () => {
    for (const spec of kernel.specs()) {
      const help = helpOutput(spec).data["text/plain"] as string;
      expect(help).toContain(spec.summary);
      for (const key of Object.keys(spec.flags)) expect(help).toContain(`--${kebab(key)}`);
    }
  });

  it("each accept their own examples", () => {
    for (const spec of kernel.specs()) {
      for (const example of spec.examples ?? []) {
        const segment = kernel.parseCell(example).find((s) => s.kind !== "code");
        expect(segment, example).toBeDefined();
        const line = segment!.kind === "cell-magic" ? segment!.header : (segment as { line: string }).line;
        const { spec: found, rest, label } = kernel.resolve(line, segment!.kind);
        const body = segment!.kind === "cell-magic" ? segment!.body : undefined;
        expect(() => parseArgs(found, rest, { label, bodyGiven: body !== undefined && body.trim() !== "" }), example).not.toThrow();
      }
    }
  });
});
