import { describe, expect, it } from "vitest";
import { UsageError } from "../../kernel/errors.js";
import { parseArgs, parseCell, parseHead } from "../../kernel/magics/parse.js";
import type { FlagMap, MagicSpec } from "../../kernel/magics/schema.js";
import { generateLike, tuneLike } from "./specs.js";

const tune = tuneLike as unknown as MagicSpec<FlagMap>;
const generate = generateLike as unknown as MagicSpec<FlagMap>;

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error("expected a UsageError");
}

describe("parseCell", () => {
  it("makes the whole cell a cell magic when the first non-blank line is %%name", () => {
    expect(parseCell("\n  %%tune --iters 5\n{\"a\": 1}\n%time x")).toEqual([
      { kind: "cell-magic", header: "%%tune --iters 5", body: '{"a": 1}\n%time x', startLine: 1 },
    ]);
  });

  it("splits line magics from code and keeps where each segment starts", () => {
    const segments = parseCell("const a = 1;\nconst b = 2;\n%time a + b\n\n%env X=1\nconsole.log(a)\n  % 2");
    expect(segments).toEqual([
      { kind: "code", code: "const a = 1;\nconst b = 2;", startLine: 0 },
      { kind: "line-magic", line: "%time a + b", startLine: 2 },
      { kind: "line-magic", line: "%env X=1", startLine: 4 },
      { kind: "code", code: "console.log(a)\n  % 2", startLine: 5 },
    ]);
  });

  it("leaves plain TypeScript alone, including the modulo operator", () => {
    expect(parseCell("let x = 7\n% 3")).toEqual([{ kind: "code", code: "let x = 7\n% 3", startLine: 0 }]);
    expect(parseCell("")).toEqual([]);
    expect(parseCell("\r\n%lsmagic\r\n")).toEqual([{ kind: "line-magic", line: "%lsmagic", startLine: 1 }]);
  });

  it("keeps a %% line that is not first as a line segment, so running it can explain", () => {
    expect(parseCell("x\n%%time")).toEqual([
      { kind: "code", code: "x", startLine: 0 },
      { kind: "line-magic", line: "%%time", startLine: 1 },
    ]);
  });
});

describe("parseHead", () => {
  it("reads the name, form, help mark and the rest", () => {
    expect(parseHead("%tune --iters 3")).toMatchObject({ name: "tune", form: "line", help: false, rest: " --iters 3" });
    expect(parseHead("%%tune?")).toMatchObject({ name: "tune", form: "cell", help: true, rest: "" });
    expect(usage(() => parseHead("%tune!x"))).toMatch(/put a space between %tune and its arguments/);
  });
});

describe("parseArgs", () => {
  it("applies defaults for every flag not given", () => {
    expect(parseArgs(tune, "")).toEqual({
      args: { iters: 100, lr: 1e-4, keys: ["q_proj", "v_proj"], eval: [], backend: "cpu", fast: false, batchSize: 4 },
      text: "",
    });
  });

  it("reads --kebab value, --name=value, bare booleans, lists and repeated flags", () => {
    const { args, text } = parseArgs(tune, ' --iters 20 --lr=3e-4 --batch-size 8 --fast --keys q_proj,k_proj --depths 32,48 --eval "Who are you?" --eval \'What is 2+2?\' data/x.jsonl');
    expect(args).toMatchObject({ iters: 20, lr: 3e-4, batchSize: 8, fast: true, keys: ["q_proj", "k_proj"], depths: [32, 48], eval: ["Who are you?", "What is 2+2?"] });
    expect(text).toBe("data/x.jsonl");
  });

  it("keeps the free text verbatim after the flags", () => {
    expect(parseArgs(generate, " --max-tokens 20 Who are you?")).toEqual({ args: { maxTokens: 20, temp: 0 }, text: "Who are you?" });
    expect(parseArgs(generate, " What's  \"quoted\"  --not-a-flag   ").text).toBe("What's  \"quoted\"  --not-a-flag");
    expect(parseArgs(generate, " --temp 0.5 -- --looks like a flag").text).toBe("--looks like a flag");
  });

  it("understands quotes and escapes in values", () => {
    expect(parseArgs(tune, ' --model "my model\\"s dir" x').args.model).toBe('my model"s dir');
    expect(parseArgs(tune, " --model my\\ model x").args.model).toBe("my model");
    expect(parseArgs(tune, " --model='a b' x").args.model).toBe("a b");
    expect(parseArgs(tune, ' --eval "--quoted dashes are values" x').args.eval).toEqual(["--quoted dashes are values"]);
    expect(parseArgs(tune, " --fast=false").args.fast).toBe(false);
  });

  it("names the bad flag, the bad value and what is expected", () => {
    expect(usage(() => parseArgs(tune, " --lr fast"))).toBe("--lr must be a positive number, got 'fast'.");
    expect(usage(() => parseArgs(tune, " --lr 0"))).toBe("--lr must be a positive number, got '0'.");
    expect(usage(() => parseArgs(tune, " --iters 1.5"))).toBe("--iters must be an integer between 1 and 100000, got '1.5'.");
    expect(usage(() => parseArgs(tune, " --iters 999999999999999999999"))).toBe("--iters must be an integer between 1 and 100000, got '999999999999999999999'.");
    expect(usage(() => parseArgs(tune, " --batch-size 0"))).toBe("--batch-size must be a positive integer, got '0'.");
    expect(usage(() => parseArgs(tune, " --lr 1e400"))).toBe("--lr must be a positive number, got '1e400'.");
    expect(usage(() => parseArgs(tune, " --backend metal"))).toBe("--backend must be one of ane, cpu, got 'metal'.");
    expect(usage(() => parseArgs(tune, " --backend cpuu"))).toBe("--backend must be one of ane, cpu, got 'cpuu'; did you mean cpu?");
    expect(usage(() => parseArgs(tune, " --depths 32,x"))).toBe("--depths must be a comma-separated list of integers between 1 and 4096 (at most 8), got '32,x'.");
    expect(usage(() => parseArgs(tune, " --depths 32,,48"))).toMatch(/^--depths must be a comma-separated list/);
    expect(usage(() => parseArgs(tune, " --fast=maybe"))).toBe("--fast must be true or false, got 'maybe'.");
  });

  it("suggests the closest flag for a typo", () => {
    expect(usage(() => parseArgs(tune, " --itres 5"))).toBe("unknown flag --itres for %tune; did you mean --iters?");
    expect(usage(() => parseArgs(tune, " --batchsize 5"))).toBe("unknown flag --batchsize for %tune; did you mean --batch-size?");
    expect(usage(() => parseArgs(tune, " --zzzzzz 5"))).toBe("unknown flag --zzzzzz for %tune; see %tune? for its flags.");
    expect(usage(() => parseArgs(tune, " -iters 5"))).toBe("%tune got '-iters' where a flag needs two dashes; write --iters, or put -- before text that starts with a dash.");
    expect(parseArgs(tune, " -- -iters 5").text).toBe("-iters 5");
    const noText = { ...generate, text: undefined } as MagicSpec<FlagMap>;
    expect(usage(() => parseArgs(noText, " -max-tokn 5"))).toBe("%generate takes no free text, got '-max-tokn 5'; did you mean --max-tokens?");
    expect(usage(() => parseArgs(noText, " hello"))).toBe("%generate takes no free text, got 'hello'; flags start with --.");
  });

  it("reports missing values, repeats and required text", () => {
    expect(usage(() => parseArgs(tune, " --iters"))).toBe("--iters needs a value: an integer between 1 and 100000.");
    expect(usage(() => parseArgs(tune, " --iters --fast"))).toBe("--iters needs a value (an integer between 1 and 100000) before '--fast'.");
    expect(usage(() => parseArgs(tune, " --iters 1 --iters 2"))).toBe("--iters was given more than once for %tune; give it once.");
    expect(usage(() => parseArgs(generate, " --max-tokens 5"))).toBe("%generate needs PROMPT: %generate [flags] PROMPT.");
    expect(usage(() => parseArgs(tune, ' --model "unclosed x'))).toBe("unterminated \" quote in %tune at '\"unclosed x'; close the quote or escape it with a backslash.");
  });
});
