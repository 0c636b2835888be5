import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernelSpec } from "../../kernel/install.js";
import { PACKAGE_ROOT, TOOLS_VENV } from "../../kernel/paths.js";
import type { Notebook, Output } from "../../kernel/runner/notebook.js";

export const TOOLS_PYTHON = join(TOOLS_VENV, "bin", "python");
export const CLI = join(PACKAGE_ROOT, "bin", "tunelab.js");

/** The CLI runs from dist/: rebuild when a runner source is newer than its compiled file. */
export function ensureBuilt(): void {
  const stale = readdirSync(join(PACKAGE_ROOT, "kernel", "runner")).some((f) => {
    if (!f.endsWith(".ts")) return false;
    const js = join(PACKAGE_ROOT, "dist", "kernel", "runner", f.replace(/\.ts$/, ".js"));
    return !existsSync(js) || statSync(js).mtimeMs < statSync(join(PACKAGE_ROOT, "kernel", "runner", f)).mtimeMs;
  });
  // Other folders may not compile at every moment; tsc still emits ours.
  if (stale) spawnSync(join(PACKAGE_ROOT, "node_modules", ".bin", "tsc"), ["-p", PACKAGE_ROOT], { stdio: "ignore" });
}

/** A Jupyter data dir holding this package's tunelab kernelspec (as `tunelab install` writes it). */
export function tunelabKernelPath(): string {
  const dataDir = mkdtempSync(join(tmpdir(), "tunelab-kspec-"));
  mkdirSync(join(dataDir, "kernels", "tunelab"), { recursive: true });
  writeFileSync(join(dataDir, "kernels", "tunelab", "kernel.json"), JSON.stringify(kernelSpec(), null, 1));
  return dataDir;
}

/**
 * A folder for notebooks whose cells `import ... from "tunelab/display"`: as in a project that
 * installed tunelab, the package is found in its node_modules.
 */
export function notebookDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(PACKAGE_ROOT, join(dir, "node_modules", "tunelab"), "dir");
  return dir;
}

/** A JUPYTER_PATH holding ipykernel's spec with an absolute interpreter path (the venv's python). */
export function pythonKernelPath(): string {
  const prefix = mkdtempSync(join(tmpdir(), "tunelab-kspec-"));
  execFileSync(TOOLS_PYTHON, ["-m", "ipykernel", "install", "--prefix", prefix, "--name", "python3"], { stdio: "ignore" });
  return join(prefix, "share", "jupyter");
}

export function codeCell(source: string, tags: string[] = []): Notebook["cells"][number] {
  return { cell_type: "code", source, metadata: tags.length ? { tags } : {}, outputs: [], execution_count: null };
}

export function markdownCell(source: string): Notebook["cells"][number] {
  return { cell_type: "markdown", source, metadata: {} };
}

export function writeTestNotebook(dir: string, name: string, kernel: string, cells: Notebook["cells"]): string {
  const path = join(dir, name);
  const notebook: Notebook = { cells, metadata: { kernelspec: { name: kernel, display_name: kernel } }, nbformat: 4, nbformat_minor: 5 };
  writeFileSync(path, JSON.stringify(notebook, null, 1));
  return path;
}

export function readJson<T = Notebook>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<CliResult>; stderrSoFar(): string } {
  const child = spawn(process.execPath, [CLI, "run", ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, stderrSoFar: () => stderr };
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return startCli(args, env).done;
}

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function joined(value: unknown): unknown {
  return Array.isArray(value) && value.every((v) => typeof v === "string") ? value.join("") : value;
}

/**
 * Cell outputs with what legitimately differs between runs removed: timings, execution metadata,
 * random display/element ids, and stream chunking (one front end may join what another splits).
 */
export function comparableOutputs(notebook: Notebook): unknown[] {
  return notebook.cells
    .filter((c) => c.cell_type === "code")
    .map((cell) => {
      const outputs: Output[] = [];
      for (const o of (cell as { outputs: Output[] }).outputs) {
        const last = outputs[outputs.length - 1];
        if (o.output_type === "stream" && last?.output_type === "stream" && last.name === o.name) {
          last.text = String(joined(last.text)) + String(joined(o.text));
          continue;
        }
        outputs.push(o.output_type === "stream" ? { ...o, text: String(joined(o.text)) } : { ...o });
      }
      return outputs.map((o) => {
        if (o.output_type === "stream" || o.output_type === "error") return o;
        const data = Object.fromEntries(Object.entries(o.data).map(([k, v]) => [k, scrubIds(joined(v))]));
        return { ...o, data, metadata: {} };
      });
    });
}

function scrubIds(value: unknown): unknown {
  if (typeof value !== "string") return value;
  return value
    .replace(/data:image\/svg\+xml;base64,([A-Za-z0-9+/=]+)/g, (_, b64: string) => `data:image/svg+xml,${Buffer.from(b64, "base64").toString("utf8")}`)
    .replace(/tl-[a-z]+-[0-9a-f]{6,}/g, "tl-ID")
    .replace(/\d+(\.\d+)?\s?(ms|s|it\/s|tok\/s)\b/g, "T");
}

export interface JupyterServer {
  url: string;
  token: string;
  root: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as import("node:net").AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** A real Jupyter Server (or JupyterLab, `app: "lab"`) on loopback with a token, from the tools venv. */
export async function startJupyter(options: { root: string; env: NodeJS.ProcessEnv; app?: "server" | "lab" }): Promise<JupyterServer> {
  const port = await freePort();
  const token = `t${Math.random().toString(36).slice(2)}`;
  const module = options.app === "lab" ? "jupyterlab" : "jupyter_server";
  const child = spawn(
    TOOLS_PYTHON,
    ["-m", module, "--no-browser", `--ServerApp.port=${port}`, "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", `--ServerApp.token=${token}`, `--ServerApp.root_dir=${options.root}`, "--ServerApp.allow_root=True"],
    { env: { ...process.env, JUPYTER_RUNTIME_DIR: mkdtempSync(join(tmpdir(), "tunelab-jrt-")), ...options.env }, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let log = "";
  child.stdout!.on("data", (d: Buffer) => (log += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`jupyter ${module} exited:\n${log.slice(-3000)}`);
    try {
      const response = await fetch(`${url}api/status`, { headers: { Authorization: `token ${token}` } });
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`jupyter ${module} did not start:\n${log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  return {
    url,
    token,
    root: options.root,
    async stop() {
      try {
        process.kill(-child.pid!, "SIGTERM");
      } catch {
        return;
      }
      const exited = await Promise.race([new Promise((r) => child.once("exit", () => r(true))), new Promise((r) => setTimeout(() => r(false), 10_000))]);
      if (!exited) {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // Gone.
        }
      }
    },
  };
}

/** Executes a notebook with nbclient (the reference Jupyter client) on the same kernel. */
export function runNbclient(input: string, output: string, kernel: string, env: NodeJS.ProcessEnv, cwd: string): { seconds: number } {
  const script = `
import sys, time, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
started = time.perf_counter()
NotebookClient(nb, kernel_name=sys.argv[3], timeout=600, allow_errors=True, resources={"metadata": {"path": sys.argv[4]}}).execute()
print(time.perf_counter() - started)
nbformat.write(nb, sys.argv[2])
`;
  const out = execFileSync(TOOLS_PYTHON, ["-c", script, input, output, kernel, cwd], { env: { ...process.env, ...env }, encoding: "utf8" });
  return { seconds: Number(out.trim().split("\n").pop()) };
}
