import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelClient } from "./client.js";

// One kernel for the file: starting one costs seconds on a loaded machine.
let kernel: KernelClient;

beforeAll(async () => {
  kernel = await KernelClient.start();
  await kernel.ready();
  // The first cell pays for the compiler; later timings are about the protocol.
  const warm = await kernel.execute("1 + 1", { timeoutMs: 120_000 });
  expect(warm.reply.content.status).toBe("ok");
});

afterAll(async () => {
  await kernel?.close();
});

describe("the kernel over real sockets", () => {
  it("drops forged and unsigned messages without executing them, and keeps serving", async () => {
    const marker = join(kernel.dir, "forged-ran");
    const code = `require("fs").writeFileSync(${JSON.stringify(marker)}, "x")`;
    const before = (await kernel.execute("0")).reply.content.execution_count as number;
    const forged = await kernel.send("shell", "execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true }, { key: "not-the-key" });
    const unsigned = await kernel.send("shell", "execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true }, { sign: false });
    const after = await kernel.execute("6 * 7");
    expect(after.reply.content.status).toBe("ok");
    expect(after.reply.content.execution_count).toBe(before + 1);
    expect(after.iopub.find((m) => m.header.msg_type === "execute_result")?.content.data["text/plain"]).toBe("42");
    expect(existsSync(marker)).toBe(false);
    expect(kernel.iopubSoFar(forged)).toEqual([]);
    expect(kernel.iopubSoFar(unsigned)).toEqual([]);
    expect(kernel.log).toMatch(/dropped a message on shell: bad signature/);
    expect(kernel.log).toMatch(/dropped a message on shell: missing signature/);
  });

  it("answers the heartbeat within 100 ms while a cell runs a 5-second synchronous loop", async () => {
    const id = await kernel.startExecute("const t0 = Date.now();\nwhile (Date.now() - t0 < 5000) {}\n'done'");
    await kernel.waitFor(() => kernel.iopubSoFar(id).some((m) => m.header.msg_type === "execute_input"), 60_000, "execute_input");
    const latencies: number[] = [];
    const started = Date.now();
    while (Date.now() - started < 3000) {
      latencies.push(await kernel.ping());
      await new Promise((r) => setTimeout(r, 100));
    }
    // The loop was still running through all the pings: the main thread could not have answered them.
    expect(kernel.hasReply("shell", id)).toBe(false);
    const replied = await kernel.reply("shell", id, 60_000);
    expect(replied.content.status).toBe("ok");
    expect(latencies.length).toBeGreaterThan(5);
    expect(Math.max(...latencies)).toBeLessThan(100);
  });

  it("stops a runaway synchronous loop on SIGINT, and the next cell runs", async () => {
    const id = await kernel.startExecute("let spins = 0;\nwhile (true) { spins++; }");
    await kernel.waitFor(() => kernel.iopubSoFar(id).some((m) => m.header.msg_type === "execute_input"), 60_000, "execute_input");
    // A signal that lands while the cell is still compiling is spent before the loop starts: repeat, as a person would.
    let reply;
    for (let attempt = 0; attempt < 10 && !reply; attempt++) {
      await new Promise((r) => setTimeout(r, 500));
      kernel.interrupt();
      reply = await kernel.reply("shell", id, 3000).catch(() => undefined);
    }
    expect(reply?.content.status).toBe("error");
    expect(reply?.content.ename).toBe("KeyboardInterrupt");
    const errors = (await kernel.iopubFor(id)).filter((m) => m.header.msg_type === "error");
    expect(errors).toHaveLength(1);
    const next = await kernel.execute("spins > 0");
    expect(next.reply.content.status).toBe("ok");
    expect(next.iopub.find((m) => m.header.msg_type === "execute_result")?.content.data["text/plain"]).toBe("true");
  });

  it("stops a pending await on interrupt_request, and the next cell runs", async () => {
    const id = await kernel.startExecute("await new Promise(() => {});");
    await kernel.waitFor(() => kernel.iopubSoFar(id).some((m) => m.header.msg_type === "execute_input"), 60_000, "execute_input");
    await new Promise((r) => setTimeout(r, 300));
    const interrupt = await kernel.send("control", "interrupt_request", {});
    expect((await kernel.reply("control", interrupt)).content.status).toBe("ok");
    const reply = await kernel.reply("shell", id, 30_000);
    expect(reply.content.ename).toBe("KeyboardInterrupt");
    const next = await kernel.execute("'still here'");
    expect(next.iopub.find((m) => m.header.msg_type === "execute_result")?.content.data["text/plain"]).toBe("'still here'");
  });

  it("aborts queued cells after an error when stop_on_error is set", async () => {
    // The failing cell takes a moment, as a real one does, so the second request is surely queued
    // behind it (on a loaded machine the client's second send can lag the kernel's first cell).
    const failing = await kernel.startExecute("await new Promise((r) => setTimeout(r, 200)); throw new Error('first')");
    const queued = await kernel.startExecute("console.log('must not run')");
    const failed = await kernel.reply("shell", failing);
    const aborted = await kernel.reply("shell", queued);
    expect(failed.content.ename).toBe("Error");
    expect(aborted.content.status).toBe("error");
    expect(aborted.content.ename).toBe("ExecutionAborted");
    const outputs = await kernel.iopubFor(queued);
    expect(outputs.map((m) => m.header.msg_type)).toEqual(["status", "status"]);
    // Once the queue has drained, cells run again.
    expect((await kernel.execute("1")).reply.content.status).toBe("ok");
  });

  it("runs a cell sent in answer to an error reply: only cells sent before it are aborted", async () => {
    // The client sends each next cell the moment the error reply arrives, the tightest timing
    // a client can have; the kernel must not count such a cell among the queued ones.
    for (let i = 0; i < 20; i++) {
      const failing = await kernel.startExecute(`throw new Error("e${i}")`);
      expect((await kernel.reply("shell", failing)).content.ename).toBe("Error");
      const next = await kernel.execute(`${i} + 1`);
      expect(next.reply.content.status, `cell ${i}`).toBe("ok");
    }
  });

  it("keeps the execution counter for silent and store_history=false requests", async () => {
    const a = (await kernel.execute("1")).reply.content.execution_count as number;
    const silent = await kernel.execute("console.log('quiet'); 2", { silent: true });
    expect(silent.iopub.map((m) => m.header.msg_type)).toEqual(["status", "status"]);
    const unstored = await kernel.execute("3", { storeHistory: false });
    expect(unstored.reply.content.execution_count).toBe(a);
    expect((await kernel.execute("4")).reply.content.execution_count).toBe(a + 1);
  });

  it("reports a runtime error with the failing line of the cell", async () => {
    const { reply, iopub } = await kernel.execute("const a1 = 1;\nconst b1 = 2;\nfunction explode(): number { throw new RangeError('too far'); }\nexplode();");
    expect(reply.content.ename).toBe("RangeError");
    expect(reply.content.evalue).toBe("too far");
    const traceback = (reply.content.traceback as string[]).join("\n");
    expect(traceback).toContain("cell line 3");
    expect(iopub.filter((m) => m.header.msg_type === "error")).toHaveLength(1);
  });

  it("turns a magic's usage error into a one-sentence Jupyter error and keeps magic results for TypeScript", async () => {
    const bad = await kernel.execute("%lsmagicc");
    expect(bad.reply.content.ename).toBe("UsageError");
    expect(bad.reply.content.traceback).toEqual([bad.reply.content.evalue]);
    const viaTs = await kernel.execute("const listed = await tunelab.magic('%lsmagic');\ntunelab.last === listed && tunelab.results['lsmagic'] === listed");
    expect(viaTs.reply.content.status).toBe("ok");
    expect(viaTs.iopub.find((m) => m.header.msg_type === "execute_result")?.content.data["text/plain"]).toBe("true");
  });
});
