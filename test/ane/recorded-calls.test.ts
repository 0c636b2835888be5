import { beforeAll, describe, expect, it } from "vitest";
import type { GraphDescription } from "../../kernel/ane/addon.js";
import { Random } from "../../kernel/ane/random.js";
import { describeFor } from "../../kernel/ane/stack.js";
import { FRAMEWORK_PATH, MADERIX_COMMIT, referenceKernelCalls } from "./fixtures/maderix.js";
import { buildStandin, fnv, frameworkSequence, runStandin, timedRegion, type StandinEvent, type StandinRun } from "./standin.js";

/**
 * native/src/ane_backend.cc, compiled on Linux against stand-ins that record every call, runs a
 * graph's whole life (availability, compile, load, evaluate, time, unload, release); the recorded
 * sequence is held against the calls maderix/ANE makes for the same kernel.
 */
let driver: string;
beforeAll(() => {
  driver = buildStandin();
}, 300_000);

function graph(channels: number[], spatial: number): GraphDescription {
  const rng = new Random(channels.length * 1000 + spatial);
  const weights = channels.slice(1).map((cout, i) => rng.fill(new Float32Array(cout * channels[i]!), 0.1));
  return describeFor("ane", { channels, spatial, weights });
}

function dataNames(g: GraphDescription): Record<string, string> {
  const names: Record<string, string> = { [fnv(new TextEncoder().encode(g.mil!))]: "mil" };
  for (const b of g.blobs ?? []) names[fnv(b.bytes)] = b.path;
  return names;
}

const run = (g: GraphDescription, options: string[] = []) => runStandin(g, options, driver);
const messages = (r: StandinRun, sel: string) => r.events.filter((e) => e.ev === "msg" && e.sel === sel);

function expectClean(r: StandinRun): void {
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status).toBe(0);
  const report = r.report();
  expect(report.problems).toEqual([]);
  expect(report.live).toEqual([]);
  expect(report.loaded).toBe(0);
  expect(report.filesLeft).toEqual([]);
}

describe(`recorded calls: one kernel's life is maderix/ANE's (${MADERIX_COMMIT})`, () => {
  for (const [what, channels, spatial] of [
    ["a tiny_train kernel (64 -> 128 channels, S = 16)", [64, 128], 16],
    ["a three-layer stack in one weight file (64 channels, S = 32)", [64, 64, 64, 64], 32],
  ] as const) {
    it(`${what}: compile, load, evaluate and unload call for call`, () => {
      const g = graph([...channels], spatial);
      const r = run(g, ["--time", "1,2"]);
      expectClean(r);
      expect(r.step("evaluate")).toMatchObject({ ok: true, outputMatches: true });
      const expected = referenceKernelCalls(channels[0]! * spatial * 4, channels.at(-1)! * spatial * 4);
      const seq = frameworkSequence(r, dataNames(g));
      expect(seq.slice(0, expected.compile.length)).toEqual(expected.compile);
      expect(seq.slice(expected.compile.length, expected.compile.length + expected.evaluate.length)).toEqual(expected.evaluate);
      expect(seq.at(-1)).toBe(expected.release[0]);
      expect(r.events.some((e) => e.ev === "fn" && e.fn === "dlopen" && JSON.stringify(e.args) === JSON.stringify([FRAMEWORK_PATH, { int: 2 }]))).toBe(true);
    });
  }

  it("builds each weights entry as every working project does: an NSDictionary literal {offset: @0, data: NSData}", () => {
    const r = run(graph([64, 64, 64], 16));
    const [describe] = messages(r, "modelWithMILText:weights:optionsPlist:");
    const weights = (describe!.args as Array<{ cls: string; entries: Array<[{ str: string }, { cls: string; via: string; entries: Array<[{ str: string }, { cls: string; num?: string; value?: number }]> }]> }>)[1]!;
    expect(weights.cls).toBe("NSDictionary");
    expect(weights.entries.map(([k]) => k.str)).toEqual(["@model_path/weights/weight.bin"]);
    for (const [, entry] of weights.entries) {
      expect(entry.cls).toBe("NSDictionary");
      expect(entry.via).toBe("+[NSDictionary dictionaryWithObjects:forKeys:count:]");
      expect(entry.entries.map(([k]) => k.str)).toEqual(["offset", "data"]);
      expect(entry.entries[0]![1]).toMatchObject({ cls: "NSNumber", num: "int", value: 0 });
      expect(entry.entries[1]![1]).toMatchObject({ cls: "NSData" });
    }
  });

  it("every BLOBFILE the compiler reads lands on a chunk header with the tensor's size and data offset", () => {
    const r = run(graph([32, 48, 16, 40], 16));
    const refs = r.events.filter((e) => e.ev === "blobfile");
    expect(refs.map((e) => [e.path, e.offset, e.shape])).toEqual([
      ["@model_path/weights/weight.bin", 64, [48, 32]],
      ["@model_path/weights/weight.bin", 64 + 64 + 2 * 48 * 32, [16, 48]],
      ["@model_path/weights/weight.bin", 64 + 2 * 64 + 2 * (48 * 32 + 16 * 48), [40, 16]],
    ]);
    expect(refs.filter((e) => e.ok !== true)).toEqual([]);
  });

  it("times evaluateWithQoS alone: nothing else happens between the two clock reads of a timed evaluation", () => {
    const r = run(graph([64, 64], 16), ["--time", "3,5"]);
    expectClean(r);
    const region = timedRegion(r);
    const clocks = region.map((e, i) => (e.ev === "clock" ? i : -1)).filter((i) => i >= 0);
    expect(clocks).toHaveLength(10);
    for (let k = 0; k < clocks.length; k += 2) {
      const inside = region.slice(clocks[k]! + 1, clocks[k + 1]!);
      expect(inside.map((e) => `${e.ev} ${String(e.sel ?? e.fn ?? e.op ?? "")}`)).toEqual(["msg evaluateWithQoS:options:request:error:"]);
    }
    // Three warm-up and five timed evaluations, each 1000 stand-in ticks (1 µs) between its reads.
    expect(messages(r, "evaluateWithQoS:options:request:error:")).toHaveLength(1 + 3 + 5);
    expect(r.step("time")).toMatchObject({ ok: true, ms: [0.001, 0.001, 0.001, 0.001, 0.001] });
  });
});

describe("recorded calls: a failure at any step leaves nothing behind", () => {
  const g = () => graph([64, 128], 16);

  it("a compile the framework rejects: the reason, no object kept, no directory left", () => {
    const r = run(g(), ["--fail", "compileWithQoS:options:error:"]);
    expectClean(r);
    expect(r.step("compile")).toMatchObject({ ok: false, message: expect.stringMatching(/^the ANE compiler rejected the program: injected failure of compileWithQoS:options:error:/) });
    expect(messages(r, "loadWithQoS:options:error:")).toEqual([]);
  });

  it("a load that fails once is retried; one that fails twice is reported", () => {
    const once = run(g(), ["--fail", "loadWithQoS:options:error:=1"]);
    expectClean(once);
    expect(once.step("compile")?.ok).toBe(true);
    expect(messages(once, "loadWithQoS:options:error:")).toHaveLength(2);
    const always = run(g(), ["--fail", "loadWithQoS:options:error:"]);
    expectClean(always);
    expect(always.step("compile")).toMatchObject({ ok: false, message: expect.stringMatching(/could not load the compiled program: injected failure/) });
  });

  it("a request the framework refuses after the program is loaded: the program is unloaded again", () => {
    const r = run(g(), ["--nil", "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:"]);
    expectClean(r);
    expect(r.step("compile")).toMatchObject({ ok: false, message: expect.stringMatching(/request/) });
    expect(messages(r, "unloadWithQoS:error:")).toHaveLength(1);
  });

  for (const sel of ["modelWithMILText:weights:optionsPlist:", "compileWithQoS:options:error:", "objectWithIOSurface:"]) {
    it(`an Objective-C exception raised in ${sel} becomes an error that names it, never an abort`, () => {
      const r = run(g(), ["--raise", sel]);
      expectClean(r);
      expect(r.step("compile")).toMatchObject({ ok: false, message: expect.stringContaining(`raised NSException in ${sel.startsWith("model") || sel.startsWith("object") ? "+" : "-"}[`) });
      expect(String(r.step("compile")!.message)).toContain(sel);
    });
  }

  it("an exception during an evaluation becomes that evaluation's error; the graph is still released cleanly", () => {
    const r = run(g(), ["--raise", "evaluateWithQoS:options:request:error:"]);
    expectClean(r);
    expect(r.step("compile")?.ok).toBe(true);
    expect(r.step("evaluate")).toMatchObject({ ok: false, message: expect.stringContaining("raised NSException in -[_ANEInMemoryModel evaluateWithQoS:options:request:error:]") });
    expect(r.step("release")?.ok).toBe(true);
  });

  it("rows that are not a multiple of 64 bytes are refused before the framework sees anything", () => {
    const r = run(graph([64, 64], 20));
    expectClean(r);
    expect(r.step("compile")).toMatchObject({ ok: false, message: expect.stringMatching(/multiple of 16; got S = 20 \(80 bytes\)/) });
    expect(r.events.filter((e) => e.ev === "msg")).toEqual([]);
  });
});

describe("recorded calls: availability names what this macOS lacks", () => {
  const g = () => graph([64, 64], 16);
  const availability = (r: StandinRun) => r.step("availability") as StandinEvent & { ok: boolean; reason: string };

  it("checks every selector it will send with class_respondsToSelector before saying it is available", () => {
    const r = run(g());
    expect(availability(r).ok).toBe(true);
    const checked = new Set(r.events.filter((e) => e.ev === "fn" && e.fn === "class_respondsToSelector" && e.ret === true).map((e) => (e.args as string[]).join(" ")));
    const sent = new Set(
      r.events
        .filter((e) => e.ev === "msg")
        .map((e) => {
          const recv = e.recv as { class?: string; cls?: string };
          return recv.class !== undefined ? `+${recv.class} ${e.sel}` : `-${recv.cls} ${e.sel}`;
        })
        .filter((s) => !/ (retain|release|autorelease)$/.test(s)),
    );
    expect([...sent].filter((s) => !checked.has(s))).toEqual([]);
    expect(sent.size).toBeGreaterThan(10);
  });

  it("macOS before 15 has no ios18 MIL: unavailable, with the version", () => {
    const r = run(g(), ["--os", "14.6.1"]);
    expect(availability(r)).toMatchObject({ ok: false, reason: expect.stringMatching(/macOS 14\.6\.1.*macOS 15 or later/) });
    expect(r.step("compile")).toBeUndefined();
  });

  it("a selector this macOS lacks is named, with every other missing one", () => {
    const r = run(g(), ["--missing", "compileWithQoS:options:error:", "--missing", "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:"]);
    const { ok, reason } = availability(r);
    expect(ok).toBe(false);
    expect(reason).toContain("-[_ANEInMemoryModel compileWithQoS:options:error:]");
    expect(reason).toContain("+[_ANERequest requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:]");
    expect(r.events.filter((e) => e.ev === "msg" && /^_ANE/.test(String((e.recv as { class?: string }).class ?? "")))).toEqual([]);
  });

  it("no framework: unavailable, saying it could not be loaded", () => {
    const r = run(g(), ["--no-framework"]);
    expect(availability(r)).toMatchObject({ ok: false, reason: expect.stringMatching(/AppleNeuralEngine framework could not be loaded/) });
  });
});
