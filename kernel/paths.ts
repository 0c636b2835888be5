import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";
import { homedir } from "node:os";

/** The package root (where package.json is), whether running from dist/ or from sources. */
export const PACKAGE_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  // dist/kernel/paths.js or kernel/paths.ts: climb to the folder that holds package.json's siblings.
  while (!dir.endsWith("/kernel")) dir = dirname(dir);
  const parent = dirname(dir);
  return parent.endsWith("/dist") ? dirname(parent) : parent;
})();

/** The Python environment of the MLX bridge (never the user's global Python). */
export const BRIDGE_VENV = process.env.TUNELAB_BRIDGE_VENV ?? join(PACKAGE_ROOT, ".venv-bridge");
export const BRIDGE_PYTHON = join(BRIDGE_VENV, "bin", "python");
export const BRIDGE_SOURCE = join(PACKAGE_ROOT, "python-bridge");

/** Jupyter clients used by tests and benchmarks (jupyter_kernel_test, nbclient, JupyterLab). */
export const TOOLS_VENV = process.env.TUNELAB_TOOLS_VENV ?? join(PACKAGE_ROOT, ".venv-tools");

/** Models imported once (the embedded SmolLM2 converted for mlx-lm), downloaded wheels, measurements. */
export const CACHE_DIR = resolve(
  process.env.TUNELAB_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "tunelab"),
);

export const NATIVE_ADDON = join(PACKAGE_ROOT, "native", "build", "Release", "tunelab_native.node");
