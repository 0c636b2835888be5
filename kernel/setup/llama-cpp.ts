import { BRIDGE_PYTHON, CACHE_DIR } from "../paths.js";
import { bridgeEnv } from "../bridge/local.js";
import { runCommand, type SetupStep } from "./step.js";

/**
 * llama.cpp, %generate's CPU engine: llama-cpp-python's pinned sdist compiled once for this CPU
 * into the cache (python-bridge/tunelab_bridge/llama_build.py), then checked on this CPU in a
 * forked child. Minutes on 2 cores, so it runs after everything else the bridge needs: until it
 * is ready %generate answers on MLX. A failed build is not fatal and is not retried on every
 * set-up; `python -m tunelab_bridge.llama_build --build --force` retries it.
 */
const llamaCpp: SetupStep = {
  name: "bridge generation engine (llama.cpp)",
  async done() {
    const env = bridgeEnv({ TUNELAB_CACHE: CACHE_DIR });
    return (await runCommand(BRIDGE_PYTHON, ["-m", "tunelab_bridge.llama_build", "--ready"], { env, allowFailure: true })).code === 0;
  },
  async run(log) {
    const env = bridgeEnv({ TUNELAB_CACHE: CACHE_DIR });
    const built = await runCommand(BRIDGE_PYTHON, ["-m", "tunelab_bridge.llama_build", "--build"], { log, env, allowFailure: true });
    if (built.code !== 0) log("%generate will answer on MLX (slower on the CPU) until llama.cpp builds; the reason is above.");
  },
};

export function llamaSteps(): SetupStep[] {
  return [llamaCpp];
}
