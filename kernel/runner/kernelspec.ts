import { existsSync, readFileSync } from "node:fs";
import { homedir, platform } from "node:os";
import { delimiter, join } from "node:path";
import { UserFacingError } from "../errors.js";
import { DEFAULT_KERNEL_NAME, kernelSpec } from "../install.js";
import { PACKAGE_ROOT, TOOLS_VENV } from "../paths.js";

export interface KernelSpec {
  name: string;
  /** The folder holding kernel.json (its `{resource_dir}`). */
  resourceDir: string;
  argv: string[];
  displayName: string;
  language: string;
  interruptMode: "signal" | "message";
  env: Record<string, string>;
}

/** Jupyter's data directories in its own order of precedence (jupyter_core's jupyter_path()). */
export function kernelSearchPath(env: NodeJS.ProcessEnv = process.env): string[] {
  const dataDirs = [
    ...(env.JUPYTER_PATH ?? "").split(delimiter).filter(Boolean),
    env.JUPYTER_DATA_DIR ?? (platform() === "darwin" ? join(homedir(), "Library", "Jupyter") : join(env.XDG_DATA_HOME ?? join(homedir(), ".local", "share"), "jupyter")),
    "/usr/local/share/jupyter",
    "/usr/share/jupyter",
    join(TOOLS_VENV, "share", "jupyter"),
  ];
  return [...new Set(dataDirs)].map((d) => join(d, "kernels"));
}

export function findKernelSpec(name: string, env: NodeJS.ProcessEnv = process.env): KernelSpec {
  const searched = kernelSearchPath(env);
  for (const dir of searched) {
    const resourceDir = join(dir, name);
    const file = join(resourceDir, "kernel.json");
    if (!existsSync(file)) continue;
    const raw = JSON.parse(readFileSync(file, "utf8")) as {
      argv?: string[];
      display_name?: string;
      language?: string;
      interrupt_mode?: string;
      env?: Record<string, string>;
    };
    if (!Array.isArray(raw.argv) || raw.argv.length === 0) {
      throw new UserFacingError(`The kernelspec ${file} has no argv; reinstall the '${name}' kernel.`);
    }
    return {
      name,
      resourceDir,
      argv: raw.argv,
      displayName: raw.display_name ?? name,
      language: raw.language ?? "",
      interruptMode: raw.interrupt_mode === "message" ? "message" : "signal",
      env: raw.env ?? {},
    };
  }
  // This package's own kernel needs no installation to run headless.
  if (name === DEFAULT_KERNEL_NAME) return bundledKernelSpec();
  const hint = "install it or pick another with --kernel NAME";
  throw new UserFacingError(`No Jupyter kernel named '${name}' was found in ${searched.join(", ")}; ${hint}.`);
}

/** The tunelab kernel of this very installation (this Node, this package), whether installed or not. */
export function bundledKernelSpec(): KernelSpec {
  const spec = kernelSpec();
  return {
    name: DEFAULT_KERNEL_NAME,
    resourceDir: PACKAGE_ROOT,
    argv: spec.argv,
    displayName: spec.display_name,
    language: spec.language,
    interruptMode: spec.interrupt_mode,
    env: {},
  };
}
