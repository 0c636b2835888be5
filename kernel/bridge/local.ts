import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { UserFacingError } from "../errors.js";
import { describeExit } from "./crash.js";
import { BRIDGE_PYTHON, BRIDGE_SOURCE } from "../paths.js";

export const READY_PREFIX = "TUNELAB_BRIDGE_READY";

export interface BridgeLaunch {
  /** Where the bridge listens: a private `ipc://` path, or `tcp://...` for `tunelab bridge`. */
  listen: string;
  runsDir: string;
  python?: string;
  curveSecretKeyFile?: string;
  curveClientsDir?: string;
  /** The bridge exits when this process dies, so a killed kernel leaves no orphan holding memory. */
  parentPid?: number;
  env?: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
}

export interface RunningBridge {
  child: ChildProcess;
  endpoint: string;
  /** Resolves with a short description once the process has exited. */
  exited: Promise<string>;
  stderrTail(): string;
}

/** The bridge's environment: its own sources first on the path, whatever the venv holds. */
export function bridgeEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  env.PYTHONPATH = [BRIDGE_SOURCE, env.PYTHONPATH].filter(Boolean).join(delimiter);
  env.PYTHONUNBUFFERED = "1";
  return env;
}

export function bridgeArgs(launch: BridgeLaunch): string[] {
  const args = ["-m", "tunelab_bridge", "serve", "--listen", launch.listen, "--runs-dir", launch.runsDir];
  if (launch.curveSecretKeyFile) args.push("--curve-secret-key", launch.curveSecretKeyFile);
  if (launch.curveClientsDir) args.push("--curve-clients", launch.curveClientsDir);
  if (launch.parentPid) args.push("--parent-pid", String(launch.parentPid));
  return args;
}

/**
 * TUNELAB_BRIDGE_WRAPPER: a command the bridge's Python runs under, such as
 * `qemu-x86_64 -cpu Haswell` (the tests run the bridge on emulated CPUs), `taskset -c 0-3` or
 * `numactl --cpunodebind=0`. Words are separated by spaces.
 */
export const WRAPPER_ENV = "TUNELAB_BRIDGE_WRAPPER";

/** The command line that runs `python args...`, under the wrapper when one is set in `env`. */
export function pythonCommand(python: string, args: string[], env: NodeJS.ProcessEnv = process.env): { command: string; args: string[] } {
  const wrapper = (env[WRAPPER_ENV] ?? "").trim().split(/\s+/).filter(Boolean);
  return wrapper.length ? { command: wrapper[0]!, args: [...wrapper.slice(1), python, ...args] } : { command: python, args };
}

export function missingBridgeError(python: string): UserFacingError {
  return new UserFacingError(`The MLX bridge is not installed (no Python at ${python}); run \`npm run setup\` and try again.`);
}

/**
 * Starts the Python bridge in its own process group (so a notebook interrupt aimed at the
 * kernel's group never reaches it) and resolves once it prints its READY line.
 */
export function launchBridge(launch: BridgeLaunch): Promise<RunningBridge> {
  const python = launch.python ?? BRIDGE_PYTHON;
  if (!existsSync(python)) return Promise.reject(missingBridgeError(python));
  const env = bridgeEnv(launch.env);
  const { command, args } = pythonCommand(python, bridgeArgs(launch), env);
  const child = spawn(command, args, {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  let stderr = "";
  // The crash reporter's line, kept apart: faulthandler's dump of every thread follows it and
  // can push it out of the tail.
  let fatalLine = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-8000);
    fatalLine = [...chunk.toString("utf8").matchAll(/^TUNELAB_FATAL .*(?=\n)/gm)].pop()?.[0] ?? fatalLine;
  });
  const stderrTail = () =>
    stderr
      .trim()
      .split("\n")
      .slice(-12)
      .join("\n");
  const exited = new Promise<string>((resolve) => {
    // Described once stderr is complete ("close"), or soon after "exit" if a grandchild keeps it open.
    let ended: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const describe = () => ended && resolve(describeExit(ended.code, ended.signal, `${fatalLine}\n${stderr}`));
    child.once("exit", (code, signal) => {
      ended = { code, signal };
      setTimeout(describe, 1000);
    });
    child.once("close", (code: number | null, signal: NodeJS.Signals | null) => {
      ended ??= { code, signal };
      describe();
    });
    child.once("error", (error) => resolve(`the bridge process could not start: ${error.message}`));
  });

  return new Promise<RunningBridge>((resolve, reject) => {
    let stdout = "";
    let settled = false;
    const timeoutMs = launch.readyTimeoutMs ?? 120_000;
    const timer = setTimeout(() => {
      fail(new UserFacingError(`The MLX bridge did not start within ${Math.round(timeoutMs / 1000)} s; check \`tunelab doctor\`.${tailText()}`));
      killGroup(child, "SIGKILL");
    }, timeoutMs);
    const tailText = () => (stderrTail() ? `\n\nBridge output:\n${stderrTail()}` : "");
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(error);
    };
    child.stdout!.on("data", (chunk: Buffer) => {
      if (settled) return;
      stdout += chunk.toString("utf8");
      const line = stdout.split("\n").find((l) => l.startsWith(READY_PREFIX));
      if (!line) return;
      settled = true;
      clearTimeout(timer);
      const endpoint = line.slice(READY_PREFIX.length).trim() || launch.listen;
      resolve({ child, endpoint, exited, stderrTail });
    });
    void exited.then((how) => {
      if (/No module named '?(mlx|tunelab_bridge|zmq)/.test(stderr)) {
        fail(new UserFacingError(`The MLX bridge is not installed completely (${/No module named [^\n]*/.exec(stderr)?.[0]}); run \`npm run setup\` and try again.`));
      } else {
        fail(new UserFacingError(`The MLX bridge failed to start (${how}); run \`tunelab doctor\` to check its environment.${tailText()}`));
      }
    });
  });
}

/** Signals the bridge's whole process group (it may have its own children, e.g. g++ for mx.compile). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** A private directory (0700) for the bridge's ipc socket, so no other user can connect to it. */
export function privateSocketDir(): { dir: string; endpoint: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "tunelab-bridge-"));
  return {
    dir,
    endpoint: `ipc://${join(dir, "bridge.sock")}`,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
