import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KernelClient, type WireMessage } from "../kernel/client.js";
import { ensureBuilt } from "../runner/fixtures.js";
import { PACKAGE_ROOT } from "../../kernel/paths.js";
import { bridgeInstalled, tempDir, tinyModelDir } from "./fixtures.js";
import { isAlive } from "../../kernel/runner/processes.js";

/** The bridges a kernel started: children (by ppid) running tunelab_bridge. */
function bridgePids(kernelPid: number): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        return ppid === kernelPid && readFileSync(`/proc/${d}/cmdline`, "utf8").includes("tunelab_bridge");
      } catch {
        return false;
      }
    })
    .map(Number);
}

function plain(message: WireMessage): string {
  const data = (message.content.data ?? {}) as Record<string, unknown>;
  return String(data["text/plain"] ?? message.content.text ?? "");
}

describe.skipIf(!bridgeInstalled)("the magics through the kernel, over the Jupyter wire", () => {
  let kernel: KernelClient;
  let model: string;
  let cwd: string;

  beforeAll(async () => {
    ensureBuilt();
    model = tinyModelDir();
    cwd = tempDir();
    mkdirSync(join(cwd, "data"));
    copyFileSync(join(PACKAGE_ROOT, "data", "identity.jsonl"), join(cwd, "data", "identity.jsonl"));
    kernel = await KernelClient.start({ cwd });
    await kernel.ready();
  });

  afterAll(async () => {
    await kernel?.close();
  });

  it("%tune streams one display updated in place and hands its result to TypeScript", async () => {
    const { reply, iopub } = await kernel.execute(`%tune --model ${model} --data data/identity.jsonl --iters 8 --layers 2 --lr 1e-3 --name wire`, { timeoutMs: 300_000 });
    expect(reply.content.status).toBe("ok");
    const first = iopub.find((m) => m.header.msg_type === "display_data")!;
    const id = (first.content.transient as { display_id: string }).display_id;
    const updates = iopub.filter((m) => m.header.msg_type === "update_display_data" && (m.content.transient as { display_id: string }).display_id === id);
    expect(updates.length).toBeGreaterThan(0);
    expect(plain(updates[updates.length - 1]!)).toMatch(/completed 8 steps/);
    expect(iopub.filter((m) => m.header.msg_type === "display_data").map(plain).join("\n")).toMatch(/trainable params/);
    expect(existsSync(join(cwd, "runs", "wire", "adapters.safetensors"))).toBe(true);

    const { iopub: ts } = await kernel.execute("tunelab.results.tune.history.map((p: { step: number }) => p.step).join(',')");
    const result = ts.find((m) => m.header.msg_type === "execute_result")!;
    expect(plain(result)).toBe("'1,2,3,4,5,6,7,8'");
  });

  it("an interrupt stops %tune at the next step, the bridge survives it, and the kernel goes on", async () => {
    const pidsBefore = bridgePids(kernel.child.pid!);
    expect(pidsBefore).toHaveLength(1);
    const msgId = await kernel.startExecute(`%tune --model ${model} --data data/identity.jsonl --iters 100000 --layers 2 --name wire-stop`);
    await kernel.waitFor(() => kernel.iopubSoFar(msgId).some((m) => /step \d+\/100000/.test(plain(m))), 240_000, "training progress");
    kernel.interrupt();
    const iopub = await kernel.iopubFor(msgId, 120_000);
    const texts = iopub.filter((m) => m.header.msg_type === "update_display_data").map(plain);
    expect(texts[texts.length - 1]).toMatch(/interrupted at step \d+/);
    expect(existsSync(join(cwd, "runs", "wire-stop", "adapters.safetensors"))).toBe(true);
    // The bridge lives in its own process group: the SIGINT did not reach it.
    expect(bridgePids(kernel.child.pid!)).toEqual(pidsBefore);
    const { reply, iopub: gen } = await kernel.execute("%generate --max-tokens 4 Who are you?", { timeoutMs: 120_000 });
    expect(reply.content.status).toBe("ok");
    expect(gen.map(plain).join("\n")).toMatch(/tokens\/s/);
  });

  it("an interrupted tunelab.magic(%tune) from TypeScript still says where training stopped, in its cell", async () => {
    const msgId = await kernel.startExecute(
      `const run = await tunelab.magic("%tune --model ${model} --data data/identity.jsonl --iters 100000 --layers 2 --name wire-ts-stop");`,
    );
    await kernel.waitFor(() => kernel.iopubSoFar(msgId).some((m) => /step \d+\/100000/.test(plain(m))), 240_000, "training progress");
    kernel.interrupt();
    const iopub = await kernel.iopubFor(msgId, 120_000);
    const texts = iopub.filter((m) => m.header.msg_type === "update_display_data").map(plain);
    expect(texts[texts.length - 1]).toMatch(/interrupted at step \d+/);
    expect(iopub.some((m) => m.header.msg_type === "error")).toBe(true);
    expect(existsSync(join(cwd, "runs", "wire-ts-stop", "adapters.safetensors"))).toBe(true);
  });

  it("a bridge error is one sentence in the cell, and the kernel goes on", async () => {
    const { reply, iopub } = await kernel.execute(`%tune --model ${join(cwd, "missing-model")} --data data/identity.jsonl --iters 2`);
    expect(reply.content.status).toBe("error");
    const error = iopub.find((m) => m.header.msg_type === "error")!;
    expect(error.content.evalue).toMatch(/no model directory at .*missing-model/);
    expect(error.content.traceback).toHaveLength(1);
    const { reply: next } = await kernel.execute("1 + 1");
    expect(next.content.status).toBe("ok");
  });

  it("shutting the kernel down takes its bridge with it", async () => {
    const pids = bridgePids(kernel.child.pid!);
    expect(pids).toHaveLength(1);
    await kernel.close();
    const deadline = Date.now() + 30_000;
    while (isAlive(pids[0]!) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(isAlive(pids[0]!)).toBe(false);
  });
});
