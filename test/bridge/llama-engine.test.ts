import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BridgeClient } from "../../kernel/bridge/client.js";
import { bridgeEnv } from "../../kernel/bridge/local.js";
import { BRIDGE_PYTHON, CACHE_DIR } from "../../kernel/paths.js";
import { allSteps } from "../../kernel/setup/index.js";
import { bridgeInstalled, defaultModelDir, tempDir, tuneParams } from "./fixtures.js";

interface LlamaStatus {
  ok: boolean;
  built: boolean;
  cpu_specific: boolean;
  unavailable?: string;
  check: { ok: boolean; system_info?: string } | null;
}

function llamaStatus(): LlamaStatus {
  const out = execFileSync(BRIDGE_PYTHON, ["-m", "tunelab_bridge.llama_build", "--json"], { env: bridgeEnv({ TUNELAB_CACHE: CACHE_DIR }), encoding: "utf8" });
  return JSON.parse(out.trim()) as LlamaStatus;
}

const linux = process.platform === "linux" && (process.env.TUNELAB_MLX_BACKEND ?? "cpu") === "cpu";

describe("llama.cpp set-up step", () => {
  it("runs after the bridge's own steps and is not test-only", () => {
    const names = allSteps().map((s) => s.name);
    const index = names.indexOf("bridge generation engine (llama.cpp)");
    expect(index).toBeGreaterThan(names.indexOf("bridge default model (SmolLM2-135M-Instruct)"));
    expect(allSteps()[index]!.testOnly).toBeFalsy();
  });

  it.skipIf(!bridgeInstalled || !linux)("is done exactly when the bridge finds a build checked on this CPU", async () => {
    const step = allSteps().find((s) => s.name === "bridge generation engine (llama.cpp)")!;
    const state = llamaStatus();
    // A recorded build failure also counts as done: set-up does not spend minutes retrying it each run.
    expect(await step.done()).toBe(state.ok || /build failed/.test(state.unavailable ?? ""));
    if (state.ok) {
      expect(state.cpu_specific).toBe(true);
      expect(state.check?.system_info).toMatch(/CPU :/);
    }
  });
});

describe.skipIf(!bridgeInstalled || !linux || !existsSync(join(defaultModelDir, "config.json")))("generate through the bridge on the embedded model", () => {
  let client: BridgeClient;
  let ready: boolean;

  beforeAll(() => {
    client = new BridgeClient({ runsDir: tempDir() });
    ready = llamaStatus().ok;
  });

  afterAll(async () => {
    await client?.dispose();
  });

  it("answers on llama.cpp with the trained adapter, streams the same text, and says which engine answered", async () => {
    if (!ready) throw new Error(`llama.cpp is not ready here: ${llamaStatus().unavailable}; run npm run setup`);
    await client.tune({ ...tuneParams(defaultModelDir, { iters: 60, lr: 2e-4, rank: 8, layers: 4 }), name: "quill", keys: ["self_attn.q_proj", "self_attn.v_proj"] });
    let streamed = "";
    const result = (await client.call(
      "generate",
      { prompt: "What is your name?", adapter: "quill", max_tokens: 30, temp: 0, top_p: 1, seed: 0, system: null, model: null },
      { onEvent: (event: string, data: Record<string, unknown>) => { if (event === "token") streamed += String(data.text); } },
    )) as Record<string, unknown>;
    expect(result.engine).toBe("llama.cpp");
    expect(result.adapter).toBe("quill");
    expect(String(result.text)).toMatch(/Quill/);
    expect(streamed).toBe(result.text);
    expect(Number(result.tokens_per_s)).toBeGreaterThan(0);

    const mlx = (await client.call("generate", { prompt: "What is your name?", adapter: "quill", max_tokens: 30, temp: 0, top_p: 1, seed: 0, system: null, model: null, engine: "mlx" })) as Record<string, unknown>;
    expect(mlx.engine).toBe("mlx");
    expect(mlx.engine_reason).toBe("asked for MLX");
    expect(mlx.text).toBe(result.text);
  });
});
