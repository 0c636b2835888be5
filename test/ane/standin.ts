import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { GraphDescription } from "../../kernel/ane/addon.js";
import { PACKAGE_ROOT } from "../../kernel/paths.js";

/**
 * The recorded-call harness: native/src/ane_backend.cc compiled on Linux against stand-ins for the
 * Objective-C runtime, Foundation, CoreFoundation, IOSurface and the AppleNeuralEngine framework
 * (test/ane/standin/), driven through a graph's whole life. Every message and call comes back as a
 * JSON event with its receiver, selector and arguments as the callee saw them.
 */
const STANDIN = join(PACKAGE_ROOT, "test", "ane", "standin");

/** Which backend source to test; TUNELAB_STANDIN_BACKEND points the harness at another version of it. */
export const BACKEND_SOURCE = process.env.TUNELAB_STANDIN_BACKEND ?? join(PACKAGE_ROOT, "native", "src", "ane_backend.cc");

function sourcesOf(dir: string, names: string[]): string[] {
  return names.map((n) => join(dir, n)).filter(existsSync);
}

/** Builds the driver once per content of its sources (g++ is all it needs), and returns its path. */
export function buildStandin(backend = BACKEND_SOURCE): string {
  const backendDir = dirname(backend);
  const headers = ["objc/objc.h", "objc/runtime.h", "objc/message.h", "CoreFoundation/CoreFoundation.h", "IOSurface/IOSurface.h", "mach/mach_time.h", "sys/sysctl.h"];
  const inputs = [
    backend,
    ...sourcesOf(backendDir, ["backend.h", "ane_objc.h", "ane_objc.cc"]),
    ...["standin.cc", "standin.h", "driver.cc", "prelude.h"].map((f) => join(STANDIN, f)),
    ...headers.map((h) => join(STANDIN, "include", h)),
  ];
  const digest = createHash("sha256");
  for (const file of inputs) digest.update(file).update(readFileSync(file));
  const out = join(PACKAGE_ROOT, "native", "build", "standin", digest.digest("hex").slice(0, 16));
  const driver = join(out, "standin-driver");
  if (existsSync(driver)) return driver;
  mkdirSync(out, { recursive: true });
  const flags = ["-std=c++17", "-O1", "-g", "-Wall", "-Wno-unused-function", "-I", join(STANDIN, "include")];
  const backendFlags = [...flags, "-DTUNELAB_ANE_STANDIN", "-include", join(STANDIN, "prelude.h"), "-I", backendDir];
  const objects: string[] = [];
  const compile = (source: string, extra: string[]) => {
    const object = join(out, `${objects.length}-${source.split("/").pop()}.o`);
    execFileSync("g++", [...extra, "-c", source, "-o", object], { stdio: "pipe" });
    objects.push(object);
  };
  compile(backend, backendFlags);
  for (const extra of sourcesOf(backendDir, ["ane_objc.cc"])) compile(extra, backendFlags);
  compile(join(STANDIN, "standin.cc"), flags);
  compile(join(STANDIN, "driver.cc"), [...flags, "-I", backendDir]);
  const linked = `${driver}.tmp-${process.pid}`;
  execFileSync("g++", [...objects, "-o", linked, "-ldl", "-pthread"], { stdio: "pipe" });
  renameSync(linked, driver);
  return driver;
}

export interface StandinEvent {
  n?: number;
  ev: string;
  [key: string]: unknown;
}

export interface StandinRun {
  events: StandinEvent[];
  /** Exit status, or the signal that ended the driver (an exception the backend let escape aborts it). */
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** What NSTemporaryDirectory() returned, without its trailing slash. */
  tmp: string;
  step(name: string): StandinEvent | undefined;
  report(): StandinEvent;
}

/** Runs a graph (as describeFor("ane", ...) makes it) through the backend under the stand-ins. */
export function runStandin(graph: GraphDescription, options: string[] = [], driver = buildStandin()): StandinRun {
  const dir = mkdtempSync(join(tmpdir(), "tunelab-standin-spec-"));
  const tmp = mkdtempSync(join(tmpdir(), "tunelab-standin-tmp-"));
  const lines = [`channels ${graph.channels.join(" ")}`, `spatial ${graph.spatial}`];
  (graph.blobs ?? []).forEach((b, i) => {
    writeFileSync(join(dir, `blob${i}.bin`), b.bytes);
    lines.push(`blob ${b.path} blob${i}.bin`);
  });
  writeFileSync(join(dir, "spec.txt"), `${lines.join("\n")}\n`);
  writeFileSync(join(dir, "model.mil"), graph.mil ?? "");
  // TMPDIR too: a backend that asks confstr/TMPDIR instead of NSTemporaryDirectory lands in the same place.
  const result = spawnSync(driver, [dir, "--tmp", tmp, ...options], { encoding: "utf8", env: { ...process.env, TMPDIR: tmp }, maxBuffer: 256 * 2 ** 20 });
  const events = result.stdout
    .split("\n")
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as StandinEvent);
  return {
    events,
    status: result.status,
    signal: result.signal,
    stderr: result.stderr,
    tmp,
    step: (name) => events.find((e) => e.ev === "step" && e.step === name),
    report: () => {
      const r = events.find((e) => e.ev === "report");
      if (!r) throw new Error(`the driver ended without its report (status ${result.status}, signal ${result.signal}): ${result.stderr.slice(-2000)}`);
      return r;
    },
  };
}

/** FNV-1a 64, as the stand-ins label data, so a test can name the bytes it gave the backend. */
export function fnv(bytes: Uint8Array): string {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, "0");
}

interface Described {
  o?: number;
  cls?: string;
  class?: string;
  str?: string;
  num?: string;
  value?: number;
  len?: number;
  fnv?: string;
  entries?: Array<[Described | null, Described | null]>;
  items?: Array<Described | null>;
  int?: number;
  cstr?: string;
  errorOut?: boolean | string;
  ptr?: string;
}

const FRAMEWORK_FUNCTIONS = new Set(["NSTemporaryDirectory", "IOSurfaceCreate", "IOSurfaceLock", "IOSurfaceUnlock", "IOSurfaceGetBaseAddress"]);
const OPAQUE = /^(_ANE|IOSurface$)/;

/**
 * The framework-facing part of a run, one line per step, in a form a person can read and compare:
 * messages to the AppleNeuralEngine classes and their instances, the IOSurface calls, what the
 * compiler found on disk (loading the framework is checked on its own). Objects the framework made are $1, $2... in order of first appearance;
 * data is named by what it holds (`mil`, or the weight file's path); Foundation and CoreFoundation
 * objects show their class, so an NSDictionary is not mistaken for a CFMutableDictionary.
 */
export function frameworkSequence(run: StandinRun, data: Record<string, string>): string[] {
  const names = new Map<number, string>();
  const name = (o: number) => {
    if (!names.has(o)) names.set(o, `$${names.size + 1}`);
    return names.get(o)!;
  };
  const hexes = new Set<string>();
  const render = (v: Described | null | undefined): string => {
    if (v === null || v === undefined) return "nil";
    if (v.class !== undefined) return v.class;
    if (v.int !== undefined) return String(v.int);
    if (v.cstr !== undefined) return JSON.stringify(v.cstr);
    if (v.errorOut !== undefined) return v.errorOut === true ? "&error" : "&error(not nil)";
    if (v.ptr !== undefined) return `<pointer ${v.ptr}>`;
    const cls = v.cls ?? "?";
    if (OPAQUE.test(cls) && v.o !== undefined) return name(v.o);
    if (v.str !== undefined) {
      if (hexes.has(v.str)) return `${cls}<hex>`;
      if (v.str === `${run.tmp}/`) return `${cls}<tmp>`;
      return JSON.stringify(v.str);
    }
    if (v.num !== undefined) return `${cls}<${v.num} ${v.value}>`;
    if (v.fnv !== undefined) return `${cls}<${data[v.fnv] ?? `${v.len} bytes`}>`;
    if (v.entries !== undefined) return `${cls}{${v.entries.map(([k, x]) => `${render(k)}: ${render(x)}`).join(", ")}}`;
    if (v.items !== undefined) return `${cls}[${v.items.map(render).join(", ")}]`;
    return cls;
  };
  const steps: string[] = [];
  for (const e of run.events) {
    if (e.ev === "msg") {
      const recv = e.recv as Described | null;
      const receiverClass = recv?.class ?? recv?.cls ?? "";
      if (!/^_ANE/.test(receiverClass)) continue;
      const args = (e.args as Described[]).map(render).join(", ");
      const head = recv?.class !== undefined ? `+[${recv.class} ${e.sel}]` : `-[${render(recv)} ${e.sel}]`;
      if (e.sel === "hexStringIdentifier" && (e.ret as Described | null)?.str) hexes.add((e.ret as Described).str!);
      const ret = e.raised ? `raises ${e.raised}` : typeof e.ret === "boolean" ? (e.ret ? "YES" : "NO") : render(e.ret as Described | null);
      steps.push(`${head}(${args}) -> ${ret}`);
    } else if (e.ev === "fn" && FRAMEWORK_FUNCTIONS.has(String(e.fn))) {
      const args = (e.args as Described[]).map(render);
      const ret = e.fn === "IOSurfaceCreate" || e.fn === "NSTemporaryDirectory" ? ` -> ${render(e.ret as Described | null)}` : "";
      steps.push(`${e.fn}(${args.join(", ")})${ret}`);
    } else if (e.ev === "disk") {
      const files = (e.files as Array<{ path: string; matches: string | boolean | null }>).map((f) => `${f.path} = ${typeof f.matches === "string" ? f.matches : "differs"}`);
      steps.push(`disk: ${files.join(", ")}`);
    }
  }
  return steps;
}

/** The events a `time` call made between its first and last clock read. */
export function timedRegion(run: StandinRun): StandinEvent[] {
  const clocks = run.events.map((e, i) => (e.ev === "clock" ? i : -1)).filter((i) => i >= 0);
  if (clocks.length === 0) return [];
  return run.events.slice(clocks[0]!, clocks.at(-1)! + 1);
}
