import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { UsageError } from "./errors.js";
import { PACKAGE_ROOT } from "./paths.js";

export const DEFAULT_KERNEL_NAME = "tunelab";
const LOGOS = ["logo-32x32.png", "logo-64x64.png"];

export interface KernelSpec {
  argv: string[];
  display_name: string;
  language: string;
  interrupt_mode: "signal" | "message";
  metadata: Record<string, unknown>;
}

/** The kernelspec as Jupyter should start this very installation (this Node, this package). */
export function kernelSpec(): KernelSpec {
  return {
    argv: [process.execPath, join(PACKAGE_ROOT, "bin", "tunelab.js"), "kernel", "{connection_file}"],
    display_name: "TypeScript (tunelab)",
    language: "typescript",
    // A signal is the only way to stop a synchronous loop in a cell; interrupt_request is answered too.
    interrupt_mode: "signal",
    metadata: { debugger: false },
  };
}

/** Jupyter's per-user data directory (jupyter_core's rules: JUPYTER_DATA_DIR, then the platform default). */
export function userDataDir(): string {
  if (process.env.JUPYTER_DATA_DIR) return resolve(process.env.JUPYTER_DATA_DIR);
  if (process.platform === "darwin") return join(homedir(), "Library", "Jupyter");
  if (process.platform === "win32") return join(process.env.APPDATA ?? homedir(), "jupyter");
  return join(process.env.XDG_DATA_HOME ?? join(homedir(), ".local", "share"), "jupyter");
}

function sysPrefixDataDir(): string {
  const prefix = process.env.VIRTUAL_ENV ?? process.env.CONDA_PREFIX ?? pythonPrefix();
  return join(prefix, "share", "jupyter");
}

function pythonPrefix(): string {
  try {
    return execFileSync("python3", ["-c", "import sys; print(sys.prefix)"], { encoding: "utf8" }).trim();
  } catch {
    throw new UsageError("--sys-prefix needs an active Python environment (VIRTUAL_ENV, CONDA_PREFIX or python3 on PATH); use --prefix DIR instead.");
  }
}

/** The directory the spec lives in once installed under `dataDir`. */
export function kernelDir(dataDir: string, name = DEFAULT_KERNEL_NAME): string {
  return join(dataDir, "kernels", name);
}

/** Writes kernel.json (atomically) and the logos; returns the kernel's directory. */
export function installKernelSpec(dataDir: string, name = DEFAULT_KERNEL_NAME): string {
  const dir = kernelDir(dataDir, name);
  mkdirSync(dir, { recursive: true });
  const target = join(dir, "kernel.json");
  const tmp = `${target}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(kernelSpec(), null, 2)}\n`);
  renameSync(tmp, target);
  for (const logo of LOGOS) copyFileSync(join(PACKAGE_ROOT, "kernel", "assets", logo), join(dir, logo));
  return dir;
}

/** True when `dataDir` holds a spec that starts this installation, with its logos. */
export function kernelSpecInstalled(dataDir: string, name = DEFAULT_KERNEL_NAME): boolean {
  const dir = kernelDir(dataDir, name);
  try {
    const installed = JSON.parse(readFileSync(join(dir, "kernel.json"), "utf8")) as KernelSpec;
    return JSON.stringify(installed) === JSON.stringify(kernelSpec()) && LOGOS.every((logo) => existsSync(join(dir, logo)));
  } catch {
    return false;
  }
}

const USAGE = "usage: tunelab install [--user | --sys-prefix | --prefix DIR] [--name NAME]";

/** `tunelab install [--user | --sys-prefix | --prefix DIR] [--name NAME]` (default --user). */
export async function run(argv: string[]): Promise<number> {
  let where: "user" | "sys-prefix" | { prefix: string } = "user";
  let name = DEFAULT_KERNEL_NAME;
  let chosen = 0;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v.startsWith("--")) throw new UsageError(`${flag} needs a value; ${USAGE}`);
      return v;
    };
    switch (flag) {
      case "--user":
        where = "user";
        chosen++;
        break;
      case "--sys-prefix":
        where = "sys-prefix";
        chosen++;
        break;
      case "--prefix":
        where = { prefix: resolve(value()) };
        chosen++;
        break;
      case "--name":
        name = value();
        if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new UsageError(`--name must be letters, digits, '.', '_' or '-', got '${name}'.`);
        break;
      case "-h":
      case "--help":
        console.log(USAGE);
        return 0;
      default:
        throw new UsageError(`unknown option '${arg}'; ${USAGE}`);
    }
  }
  if (chosen > 1) throw new UsageError(`choose one of --user, --sys-prefix and --prefix; ${USAGE}`);
  const dataDir = where === "user" ? userDataDir() : where === "sys-prefix" ? sysPrefixDataDir() : join(where.prefix, "share", "jupyter");
  const dir = installKernelSpec(dataDir, name);
  console.log(`Installed the Jupyter kernel '${name}' (TypeScript (tunelab)) in ${dir}`);
  return 0;
}
