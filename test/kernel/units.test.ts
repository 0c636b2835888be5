import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { UserFacingError } from "../../kernel/errors.js";
import { installKernelSpec, kernelSpecInstalled, run as install } from "../../kernel/install.js";
import { endpoint, parseConnectionInfo } from "../../kernel/protocol/connection.js";
import { decode, encode, makeHeader, Signer, WireError, type Message } from "../../kernel/protocol/wire.js";
import { describeFailure, errorRecord } from "../../kernel/session/failure.js";
import { RemoteError } from "../../kernel/rpc/client.js";
import { MagicRegistry } from "../../kernel/magics/registry.js";
import { MAGICS } from "../../kernel/magics/index.js";
import { Services } from "../../kernel/session/services.js";
import { RecordingIO } from "../bridge/fixtures.js";
import { History } from "../../kernel/session/history.js";
import { codePointToIndex, indexToCodePoint } from "../../kernel/session/cursor.js";
import { mapJsLine } from "../../kernel/typescript/line-map.js";

function message(content: Record<string, unknown>): Message {
  return { identities: [Buffer.from("peer")], header: makeHeader("execute_request", "s"), parent_header: {}, metadata: {}, content, buffers: [] };
}

describe("wire signing", () => {
  const signer = new Signer("secret");

  it("round-trips a signed message with its identities", () => {
    const decoded = decode(encode(message({ code: "1+1" }), signer), signer);
    expect(decoded.content).toEqual({ code: "1+1" });
    expect(decoded.identities.map(String)).toEqual(["peer"]);
  });

  it("rejects a tampered body, another key and a missing signature", () => {
    const frames = encode(message({ code: "1+1" }), signer);
    const at = frames.findIndex((f) => f.toString() === "<IDS|MSG>");
    const tampered = [...frames];
    tampered[at + 5] = Buffer.from(JSON.stringify({ code: "process.exit()" }));
    expect(() => decode(tampered, signer)).toThrow(/bad signature/);
    expect(() => decode(encode(message({}), new Signer("other")), signer)).toThrow(WireError);
    const unsigned = [...frames];
    unsigned[at + 1] = Buffer.from("");
    expect(() => decode(unsigned, signer)).toThrow(/missing signature/);
  });

  it("does not sign with an empty key", () => {
    const open = new Signer("");
    const frames = encode(message({}), open);
    expect(frames[2].toString()).toBe("");
    expect(decode(frames, open).content).toEqual({});
  });
});

describe("connection files", () => {
  it("parses ports and builds tcp and ipc endpoints", () => {
    const base = { key: "k", shell_port: 1, iopub_port: 2, stdin_port: 3, control_port: 4, hb_port: 5 };
    expect(endpoint(parseConnectionInfo(JSON.stringify({ ...base, ip: "127.0.0.1", transport: "tcp" })), "control")).toBe("tcp://127.0.0.1:4");
    expect(endpoint(parseConnectionInfo(JSON.stringify({ ...base, ip: "/tmp/k", transport: "ipc" })), "hb")).toBe("ipc:///tmp/k-5");
  });

  it("says which field is wrong", () => {
    expect(() => parseConnectionInfo(JSON.stringify({ key: "k", shell_port: "x" }))).toThrow(/shell_port/);
    expect(() => parseConnectionInfo("{")).toThrow(UserFacingError);
  });
});

describe("tunelab install", () => {
  it("writes kernel.json and real PNG logos, idempotently", async () => {
    const prefix = mkdtempSync(join(tmpdir(), "tunelab-install-"));
    expect(await install(["--prefix", prefix, "--name", "tl-test"])).toBe(0);
    const dir = join(prefix, "share", "jupyter", "kernels", "tl-test");
    const spec = JSON.parse(readFileSync(join(dir, "kernel.json"), "utf8"));
    expect(spec.argv.slice(-2)).toEqual(["kernel", "{connection_file}"]);
    expect(spec.argv[1]).toMatch(/bin\/tunelab\.js$/);
    expect(spec).toMatchObject({ display_name: "TypeScript (tunelab)", language: "typescript", interrupt_mode: "signal" });
    for (const size of [32, 64]) {
      const png = readFileSync(join(dir, `logo-${size}x${size}.png`));
      expect(png.subarray(1, 4).toString()).toBe("PNG");
      expect(png.readUInt32BE(16)).toBe(size);
    }
    expect(kernelSpecInstalled(join(prefix, "share", "jupyter"), "tl-test")).toBe(true);
    installKernelSpec(join(prefix, "share", "jupyter"), "tl-test");
    expect(kernelSpecInstalled(join(prefix, "share", "jupyter"), "tl-test")).toBe(true);
  });

  it("refuses unknown and conflicting options with a sentence", async () => {
    await expect(install(["--sideways"])).rejects.toThrow(/unknown option '--sideways'/);
    await expect(install(["--user", "--prefix", "/tmp/x"])).rejects.toThrow(/choose one of/);
  });
});

describe("session helpers", () => {
  it("formats a person-facing error as its sentence alone", () => {
    const failure = describeFailure(new UserFacingError("--lr must be a positive number, got 'fast'", "UsageError"), "%tune --lr fast");
    expect(failure).toEqual({ ename: "UsageError", evalue: "--lr must be a positive number, got 'fast'", traceback: ["--lr must be a positive number, got 'fast'"] });
  });

  it("names the failing line of the cell", () => {
    const failure = describeFailure(new TypeError("x is not a function"), "const a = 1;\nx();", 1);
    expect(failure.ename).toBe("TypeError");
    expect(failure.traceback.join("\n")).toContain("cell line 2: x();");
  });

  it("maps a compiled JavaScript line back to the TypeScript line", () => {
    const ts = "interface P { x: number }\nconst p: P = { x: 1 };\nfunction f(q: P): number {\n  throw new Error('bad ' + q.x);\n}\nf(p);";
    const js = "exports.p = { x: 1 };\nfunction f(q) {\n    throw new Error('bad ' + q.x);\n}\nf(exports.p);";
    expect(mapJsLine(js, 2, ts)).toBe(3);
  });

  it("answers history tail, range and search", () => {
    const history = new History();
    history.add(1, "6 * 7").output = "42";
    history.add(2, "let a = 1");
    history.add(3, "6 * 7");
    expect(history.query({ hist_access_type: "tail", n: 2 })).toEqual([[1, 2, "let a = 1"], [1, 3, "6 * 7"]]);
    expect(history.query({ hist_access_type: "range", session: 1, start: 1, stop: 2, output: true })).toEqual([[1, 1, ["6 * 7", "42"]]]);
    expect(history.query({ hist_access_type: "search", pattern: "6 * ?", unique: true })).toEqual([[1, 3, "6 * 7"]]);
  });

  it("converts cursor positions between code points and UTF-16", () => {
    const text = "const s = '😀'; s.len";
    expect(codePointToIndex(text, 19)).toBe(20);
    expect(indexToCodePoint(text, 20)).toBe(19);
  });
});

describe("an internal bridge error", () => {
  const internal = () =>
    new RemoteError({
      code: "internal",
      message: "generate failed unexpectedly: ValueError: boom.",
      detail: 'Traceback (most recent call last):\n  File "generation.py", line 50, in generate\nValueError: boom\n',
    });

  it("shows its sentence with the Python traceback folded under it", () => {
    const failure = describeFailure(internal(), "%generate hi");
    expect(failure.evalue).toBe("generate failed unexpectedly: ValueError: boom.");
    expect(failure.traceback[0]).toBe(failure.evalue);
    expect(failure.traceback[1]).toMatch(/folded: %tb shows it, or tunelab\.lastError\.detail/);
    expect(failure.traceback.join("\n")).not.toMatch(/Traceback/);
    // A plain sentence error folds nothing.
    expect(describeFailure(new UserFacingError("Bad input; do this."), "x").traceback).toEqual(["Bad input; do this."]);
  });

  it("keeps the traceback for %tb, which shows it", async () => {
    const record = errorRecord(internal());
    expect(record.detail).toMatch(/ValueError: boom/);
    const registry = new MagicRegistry(MAGICS);
    const io = new RecordingIO();
    const [segment] = registry.parseCell("%tb");
    await registry.run(segment as Exclude<ReturnType<typeof registry.parseCell>[number], { kind: "code" }>, {
      io, services: new Services(), cwd: tmpdir(), evaluate: async () => undefined, lastError: () => record,
    });
    expect(io.texts().join("\n")).toMatch(/TunelabError: generate failed unexpectedly: ValueError: boom\.\n\nTraceback \(most recent call last\):/);
    const none = await registry
      .run(segment as Exclude<ReturnType<typeof registry.parseCell>[number], { kind: "code" }>, { io, services: new Services(), cwd: tmpdir(), evaluate: async () => undefined, lastError: () => undefined })
      .catch((e: Error) => e);
    expect((none as Error).message).toMatch(/No cell has raised an error yet/);
  });
});
