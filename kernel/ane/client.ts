import { fork, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UserFacingError } from "../errors.js";
import { NATIVE_ADDON, PACKAGE_ROOT } from "../paths.js";
import { RpcClient, type CallOptions } from "../rpc/client.js";
import type { Disposable, ServiceKey } from "../session/services.js";
import { IpcTransport } from "./ipc-transport.js";

export interface AneWorkerOptions {
  /** The compiled worker entry (defaults to dist/kernel/ane/worker.js). */
  script?: string;
  env?: NodeJS.ProcessEnv;
}

/** The worker runs as JavaScript: next to this module when running from dist/, else from dist/. */
export function workerScript(): string {
  const here = fileURLToPath(new URL("./worker.js", import.meta.url));
  if (existsSync(here)) return here;
  const built = join(PACKAGE_ROOT, "dist", "kernel", "ane", "worker.js");
  if (existsSync(built)) return built;
  throw new UserFacingError("The ANE worker is not built (dist/kernel/ane/worker.js is missing); run `npm run build`.");
}

interface Live {
  child: ChildProcess;
  rpc: RpcClient;
  stderr: string;
}

const NATIVE_FAULTS: Partial<Record<NodeJS.Signals, string>> = {
  SIGILL: "an illegal instruction (SIGILL): native code built for instructions this CPU lacks",
  SIGSEGV: "a segmentation fault (SIGSEGV)",
  SIGBUS: "a bus error (SIGBUS)",
};

/**
 * The kernel's handle on the ANE worker process. The worker starts on the first call, in its own
 * process group (so a notebook interrupt reaches the kernel only and becomes a `cancel`), and a
 * dead worker is replaced by a fresh one on the next call.
 */
export class AneWorker implements Disposable {
  private live: Live | undefined;
  private starts = 0;

  constructor(private readonly options: AneWorkerOptions = {}) {}

  /** The pid of the running worker, if any. */
  get pid(): number | undefined {
    return this.live && !this.live.rpc.closed ? this.live.child.pid : undefined;
  }

  /** How many worker processes this client has started. */
  get started(): number {
    return this.starts;
  }

  async call(method: string, params: Record<string, unknown> = {}, options: CallOptions = {}): Promise<Record<string, unknown>> {
    return this.ensure().rpc.call(method, params, options);
  }

  /** Replaces the worker with a fresh process (the compiler's leaks go with the old one). */
  async restart(): Promise<void> {
    await this.stop();
    this.ensure();
  }

  async dispose(): Promise<void> {
    await this.stop();
  }

  private ensure(): Live {
    if (this.live && !this.live.rpc.closed) return this.live;
    const script = this.options.script ?? workerScript();
    const child = fork(script, [], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      env: { ...process.env, ...this.options.env },
    });
    const live: Live = { child, rpc: undefined as unknown as RpcClient, stderr: "" };
    child.stdout?.on("data", () => undefined);
    child.stderr?.on("data", (chunk: Buffer) => {
      live.stderr = (live.stderr + chunk.toString()).slice(-4000);
    });
    const describeExit = (code: number | null, signal: NodeJS.Signals | null): string => {
      // The worker's only native code is the addon and the BLAS it links: a fault is theirs.
      const fault = signal ? NATIVE_FAULTS[signal] : undefined;
      if (fault) return `the worker hit ${fault} in the native addon (${NATIVE_ADDON}) or the BLAS it links; rebuild it with \`npm run setup\` and check it with \`tunelab doctor\``;
      const how = signal ? `killed by ${signal}` : `exit code ${code}`;
      const last = live.stderr.trim().split("\n").filter(Boolean).at(-1);
      return last ? `${how}: ${last.slice(0, 300)}` : how;
    };
    live.rpc = new RpcClient(new IpcTransport(child, describeExit), "ANE worker");
    this.live = live;
    this.starts += 1;
    return live;
  }

  private async stop(): Promise<void> {
    const live = this.live;
    this.live = undefined;
    if (!live) return;
    const { child } = live;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      try {
        await Promise.race([live.rpc.call("shutdown"), new Promise((r) => setTimeout(r, 2000))]);
      } catch {
        // already gone
      }
      const timer = setTimeout(() => killGroup(child), 2000);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 4000))]);
      clearTimeout(timer);
    }
    await live.rpc.close().catch(() => undefined);
  }
}

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid) process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

export const ANE_WORKER: ServiceKey<AneWorker> = {
  name: "ane-worker",
  create: () => new AneWorker(),
};
