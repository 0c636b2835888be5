import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BridgeClient } from "../../kernel/bridge/client.js";
import { ChildGoneError, RemoteError } from "../../kernel/rpc/client.js";
import { UserFacingError } from "../../kernel/errors.js";
import { bridgeInstalled, tempDir, tinyModelDir, tuneParams } from "./fixtures.js";
import { isAlive } from "../../kernel/runner/processes.js";

async function waitFor(check: () => boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("BridgeClient without an installed bridge", () => {
  it("says to run setup when the bridge's Python is missing", async () => {
    const client = new BridgeClient({ runsDir: tempDir(), python: "/nonexistent/venv/bin/python" });
    const error = await client.ping().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserFacingError);
    expect((error as Error).message).toMatch(/not installed.*npm run setup/);
    await client.dispose();
  });

  it("shows the bridge's own words when it fails to start", async () => {
    // A Python that exists but cannot serve: the system one has no tunelab_bridge dependencies.
    const client = new BridgeClient({ runsDir: tempDir(), python: "/usr/bin/python3", env: { PYTHONPATH: "/nonexistent" } });
    const error = await client.ping().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserFacingError);
    expect((error as Error).message).toMatch(/MLX bridge/);
    expect((error as Error).message).toMatch(/npm run setup|tunelab doctor/);
    await client.dispose();
  });
});

describe.skipIf(!bridgeInstalled)("BridgeClient with the real bridge", () => {
  let model: string;
  let client: BridgeClient;
  let runsDir: string;

  beforeAll(() => {
    model = tinyModelDir();
    runsDir = tempDir();
    client = new BridgeClient({ runsDir });
  });

  afterAll(async () => {
    await client?.dispose();
  });

  it("starts lazily in its own process group and answers ping and status", async () => {
    expect(client.running).toBe(false);
    const pong = await client.ping();
    expect(pong.pong).toBe(true);
    const pid = client.pid!;
    expect(pid).toBeGreaterThan(0);
    // Its own group: a SIGINT to the kernel's group never reaches it.
    const pgid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[2]);
    expect(pgid).toBe(pid);
    const status = await client.status();
    expect(status.protocol).toBe(1);
    expect(status.blas.name).toBeTruthy();
    expect(status.pid).toBe(pid);
  });

  it("streams generated tokens as events", async () => {
    const tokens: string[] = [];
    const result = await client.generate(
      { prompt: "Who are you?", adapter: null, max_tokens: 12, temp: 0, top_p: 1, seed: null, system: null, model },
      { onEvent: (e) => tokens.push(e.data.text) },
    );
    expect(result.tokens).toBeGreaterThan(0);
    expect(tokens.length).toBeGreaterThan(0);
    expect(tokens.join("")).toBe(result.text);
  });

  it("trains, streaming progress, and writes the run directory", async () => {
    const steps: number[] = [];
    const result = await client.tune(tuneParams(model, { name: "tiny-complete", iters: 12 }), {
      onEvent: (e) => e.event === "progress" && steps.push(e.data.step),
    });
    expect(result.status).toBe("completed");
    expect(result.steps).toBe(12);
    expect(steps.length).toBeGreaterThanOrEqual(10);
    expect(result.adapter_path).toContain(join(runsDir, "tiny-complete"));
    const list = await client.listAdapters();
    expect(list.runs.map((r) => r.name)).toContain("tiny-complete");
  });

  it("cancels a running job when the signal aborts: the run stops early and keeps its adapter", async () => {
    const controller = new AbortController();
    const result = await client.tune(tuneParams(model, { name: "tiny-cancel", iters: 5000 }), {
      signal: controller.signal,
      onEvent: (e) => {
        if (e.event === "progress" && e.data.step >= 3) controller.abort();
      },
    });
    expect(result.status).toBe("interrupted");
    expect(result.steps).toBeGreaterThanOrEqual(3);
    expect(result.steps).toBeLessThan(5000);
    expect(result.adapter_path && existsSync(result.adapter_path)).toBe(true);
    // The bridge is still serving after a cancel.
    expect((await client.ping()).pong).toBe(true);
  });

  it("turns a bridge error into the bridge's sentence", async () => {
    const error = await client.tune(tuneParams(model, { data: { train: { source: "cell", text: '{"messages": [\n' }, valid: null } })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteError);
    expect((error as RemoteError).code).toBe("bad_data");
    expect((error as Error).message).toMatch(/line 1/);
  });

  it("fails the call in flight when the bridge is killed, and starts a fresh bridge on the next call", async () => {
    await client.ping();
    const pid = client.pid!;
    let killed = false;
    const run = client.tune(tuneParams(model, { name: "tiny-killed", iters: 5000 }), {
      onEvent: (e) => {
        if (e.event === "progress" && e.data.step >= 2 && !killed) {
          killed = true;
          process.kill(-pid, "SIGKILL");
        }
      },
    });
    const error = await run.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ChildGoneError);
    expect((error as Error).message).toMatch(/MLX bridge stopped while working \(the bridge process was killed by SIGKILL\)/);
    await waitFor(() => !isAlive(pid));
    const pong = await client.ping();
    expect(pong.pong).toBe(true);
    expect(client.pid).not.toBe(pid);
  });

  it("dispose shuts the bridge down and leaves no process behind", async () => {
    const other = new BridgeClient({ runsDir: tempDir() });
    await other.ping();
    const pid = other.pid!;
    expect(isAlive(pid)).toBe(true);
    await other.dispose();
    await waitFor(() => !isAlive(pid));
    await expect(other.ping()).rejects.toThrow(/shutting down/);
  });
});
