import { describe, expect, it } from "vitest";
import { UsageError } from "../../kernel/errors.js";
import { builtinMagics } from "../../kernel/magics/builtins.js";
import { MagicRegistry } from "../../kernel/magics/registry.js";
import type { FlagMap, MagicSpec } from "../../kernel/magics/schema.js";
import { Services } from "../../kernel/session/services.js";
import { RecordingIO } from "../display/fake-io.js";
import { cellOnly, generateLike, tuneLike } from "./specs.js";

const registry = new MagicRegistry([...builtinMagics, tuneLike, generateLike, cellOnly] as unknown as MagicSpec<FlagMap>[]);

/** Deterministic, so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ["a", "z", "Q", "_", "-", "1", "9", "é", "ß", "λ", "中", "🙂", "\u200b", "ℓ", "\u00a0".replace("\u00a0", "x")];

function generator(seed: number) {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const word = (min = 1, max = 8) => "x" + Array.from({ length: min + Math.floor(rand() * (max - min + 1)) }, () => pick(ALPHABET)).join("");
  const validFlag = () =>
    pick([
      () => `--iters ${1 + Math.floor(rand() * 1000)}`,
      () => `--lr=${(rand() / 100 + 1e-6).toPrecision(3)}`,
      () => `--fast`,
      () => `--keys q_proj,v_proj`,
      () => `--eval "${word()} ${word()}"`,
      () => `--eval '${word()}'`,
      () => `--backend ${pick(["ane", "cpu"])}`,
      () => `--model ${pick(["a/b", '"with space"', "x\\ y"])}`,
    ])();
  const knownFlags = new Set(["iters", "lr", "keys", "depths", "eval", "backend", "fast", "batch-size", "model"]);
  const faults: Array<() => string> = [
    () => {
      let name = pick(ALPHABET) + word(0, 12);
      while (knownFlags.has(name)) name = pick(ALPHABET) + word(0, 12);
      return `--${name} ${word()}`;
    },
    () => `--iters ${pick(["", "abc", "1.5", "-3", "0", "9".repeat(5 + Math.floor(rand() * 60)), "1e3", "0x10", "١٢", "∞", "NaN", "100001"])}`.trimEnd(),
    () => `--iters=${pick(["", "x", "2.0", "+-1", "9".repeat(40)])}`,
    () => `--lr ${pick(["fast", "0", "-1e-4", "1e999", "Infinity", "NaN", "1..2", ".", "e5", "1e", "0x1p3", word()])}`,
    () => `--batch-size`,
    () => `--lr --fast`,
    () => `--model "${word()} unterminated`,
    () => `--eval '${word()}`,
    () => `--backend ${pick(["gpu", "metal", "ANE", "", "c p u", word()])}`.trimEnd(),
    () => `--depths ${pick(["32,,48", "x,1", ",", "32,", "1,2,3,4,5,6,7,8,9", "0", "5000", "1.5", "32;48"])}`,
    () => `--iters 5 --iters 6`,
    () => `--fast=${pick(["maybe", "2", "", "truthy", word()])}`,
    () => `-${pick(["iters", "lr", "fast"])} 3`,
  ];
  const line = (): string => {
    const kind = rand();
    if (kind < 0.08) return `%${pick(["tun", "tume", "zz", "lsmagik", "é", "λ", "中", "ℓ"])}${word(0, 6)}${pick(["", " --x", "?"])}`;
    if (kind < 0.12) return pick(["%%env X=1\nbody", "%bench", "%%lsmagic\n", "x = 1\n%%time", "%generate --max-tokens 3", "%generate", "%lsmagic --x", "%time"]);
    if (kind < 0.15) return `%tune${pick(["!", "#", "(", "é", "🙂"])}${word()}`;
    const noise = Array.from({ length: Math.floor(rand() * 4) }, validFlag).join(" ");
    // Free text after `--` must not change the verdict on the fault before it.
    const tail = rand() < 0.5 ? ` -- ${word(0, 10)}` : "";
    const form = rand() < 0.8 ? "%tune" : "%%tune";
    return `${form} ${noise} ${pick(faults)()}${tail}${form === "%%tune" ? "\n{}" : ""}`;
  };
  return line;
}

function isSentence(message: string): boolean {
  const outsideQuotes = message.replace(/'(?:[^'\\]|\\.)*'…?'?/g, "'…'");
  return (
    !message.includes("\n") &&
    message.length <= 400 &&
    /[.?]$/.test(message) &&
    /^[%'\-a-z0-9]/.test(message) &&
    !/undefined|\[object|NaN|null/.test(outsideQuotes)
  );
}

describe("fuzzed magic lines", () => {
  it("gives 1,000 malformed lines a UsageError each, as one readable sentence", async () => {
    const line = generator(20251123);
    const io = new RecordingIO();
    const ctx = { io, services: new Services(), cwd: process.cwd(), evaluate: async () => undefined };
    const failures: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const code = line();
      const segment = registry.parseCell(code).find((s) => s.kind !== "code");
      if (!segment) {
        failures.push(`${JSON.stringify(code)}: not parsed as a magic`);
        continue;
      }
      const outcome = await registry.run(segment, ctx).then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      );
      if (outcome.ok) {
        // `%name?` help is the one accepted outcome for a line ending in `?`.
        if (code.trimEnd().endsWith("?") && outcome.value.value === undefined) continue;
        failures.push(`${JSON.stringify(code)}: accepted`);
      } else if (!(outcome.error instanceof UsageError)) {
        failures.push(`${JSON.stringify(code)}: ${String(outcome.error)}`);
      } else if (!isSentence(outcome.error.message)) {
        failures.push(`${JSON.stringify(code)}: not a sentence: ${outcome.error.message}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("checks sentences strictly enough to catch a broken message", () => {
    expect(isSentence("--lr must be a positive number, got 'fast'.")).toBe(true);
    expect(isSentence("--lr must be undefined")).toBe(false);
    expect(isSentence("bad\nline.")).toBe(false);
  });
});
