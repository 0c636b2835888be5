import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Dealer, Subscriber } from "zeromq";
import type { KernelMessage } from "@jupyterlab/services";
import { InterruptedError, UserFacingError } from "../errors.js";
import { KernelDiedError, type KernelHandle } from "./kernel-handle.js";
import type { KernelSpec } from "./kernelspec.js";
import { descendants, isAlive, signalTree, waitForExit } from "./processes.js";
import { parentId, WireCodec } from "./wire.js";

type ExecuteReply = KernelMessage.IExecuteReplyMsg["content"];

interface Pending {
  onIOPub?: (message: KernelMessage.IIOPubMessage) => void;
  reply?: KernelMessage.IMessage;
  idle: boolean;
  resolve(reply: KernelMessage.IMessage): void;
  reject(error: Error): void;
}

const HOST = "127.0.0.1";
const STDERR_TAIL = 4000;

async function freePorts(count: number): Promise<number[]> {
  // Hold every listener until all ports are known, so that no port is handed out twice.
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<import("node:net").Server>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, HOST, () => resolve(server));
    })),
  );
  const ports = servers.map((s) => (s.address() as import("node:net").AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/**
 * A kernel started by us, as any Jupyter client starts one: a connection file with fresh ports
 * and key, the kernelspec's argv, its own process group (so our Ctrl-C is ours to forward), and
 * JPY_PARENT_PID so that the kernel leaves if we are killed outright.
 */
export class LocalKernel implements KernelHandle {
  info!: KernelMessage.IInfoReply;
  private readonly key = randomBytes(32).toString("hex");
  private readonly codec = new WireCodec(this.key);
  private readonly shell = new Dealer({ linger: 0 });
  private readonly control = new Dealer({ linger: 0 });
  private readonly iopub = new Subscriber({ linger: 0 });
  private readonly pending = new Map<string, Pending>();
  private child!: ChildProcess;
  private stderrTail = "";
  private exited: string | undefined;
  private closed = false;
  private readonly dir = mkdtempSync(join(tmpdir(), "tunelab-run-"));
  private readonly onProcessExit = () => this.killNow();

  private constructor(private readonly spec: KernelSpec) {}

  get description(): string {
    return `${this.spec.name} (local, pid ${this.child.pid})`;
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(spec: KernelSpec, options: { cwd: string; startupTimeoutMs: number; signal?: AbortSignal }): Promise<LocalKernel> {
    const kernel = new LocalKernel(spec);
    try {
      await kernel.launch(options.cwd);
      await kernel.waitReady(options.startupTimeoutMs, options.signal);
    } catch (error) {
      await kernel.shutdown({ force: true });
      throw error;
    }
    return kernel;
  }

  private async launch(cwd: string): Promise<void> {
    const [shell, iopub, stdin, control, hb] = await freePorts(5);
    const connection = {
      transport: "tcp",
      ip: HOST,
      shell_port: shell,
      iopub_port: iopub,
      stdin_port: stdin,
      control_port: control,
      hb_port: hb,
      key: this.key,
      signature_scheme: "hmac-sha256",
      kernel_name: this.spec.name,
    };
    const connectionFile = join(this.dir, "kernel.json");
    writeFileSync(connectionFile, JSON.stringify(connection, null, 1), { mode: 0o600 });
    const argv = this.spec.argv.map((a) => a.replaceAll("{connection_file}", connectionFile).replaceAll("{resource_dir}", this.spec.resourceDir));
    this.child = spawn(argv[0], argv.slice(1), {
      cwd,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...this.spec.env, JPY_PARENT_PID: String(process.pid) },
    });
    process.once("exit", this.onProcessExit);
    const keepTail = (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-STDERR_TAIL);
    };
    this.child.stdout!.on("data", keepTail);
    this.child.stderr!.on("data", keepTail);
    await new Promise<void>((resolve, reject) => {
      this.child.once("spawn", () => resolve());
      this.child.once("error", (error) => reject(new UserFacingError(`Could not start the '${this.spec.name}' kernel (${argv[0]}): ${error.message}; check its kernelspec in ${this.spec.resourceDir}.`)));
    });
    this.child.once("exit", (code, signal) => {
      this.exited = signal ? `killed by ${signal}` : `exit code ${code}`;
      const tail = this.stderrTail.trim().split("\n").slice(-15).join("\n");
      const error = new KernelDiedError(`The '${this.spec.name}' kernel stopped (${this.exited}).${tail ? `\nIts last output:\n${tail}` : ""}`);
      for (const pending of this.pending.values()) pending.reject(error);
      this.pending.clear();
    });
    const url = (port: number) => `tcp://${HOST}:${port}`;
    this.shell.connect(url(shell));
    this.control.connect(url(control));
    this.iopub.connect(url(iopub));
    this.iopub.subscribe();
    void this.receive(this.shell, "shell");
    void this.receive(this.control, "control");
    void this.receive(this.iopub, "iopub");
  }

  private async receive(socket: Dealer | Subscriber, channel: KernelMessage.Channel): Promise<void> {
    try {
      for await (const frames of socket) {
        const message = this.codec.decode(frames, channel);
        if (message) this.dispatch(message);
      }
    } catch {
      // The socket was closed during shutdown.
    }
  }

  private dispatch(message: KernelMessage.IMessage): void {
    const pending = this.pending.get(parentId(message) ?? "");
    if (!pending) return;
    if (message.channel === "iopub") {
      const iopub = message as KernelMessage.IIOPubMessage;
      if (iopub.header.msg_type === "status" && (iopub as KernelMessage.IStatusMsg).content.execution_state === "idle") pending.idle = true;
      else pending.onIOPub?.(iopub);
    } else {
      pending.reply = message;
    }
    if (pending.reply && pending.idle) {
      this.pending.delete(parentId(message)!);
      pending.resolve(pending.reply);
    }
  }

  /** Sends a request and resolves with its reply once the kernel is idle again for it. */
  private request(
    channel: "shell" | "control",
    message: KernelMessage.IMessage,
    onIOPub?: Pending["onIOPub"],
    requireIdle = true,
  ): Promise<KernelMessage.IMessage> {
    if (this.exited) return Promise.reject(new KernelDiedError(`The '${this.spec.name}' kernel is not running (${this.exited}).`));
    return new Promise((resolve, reject) => {
      this.pending.set(message.header.msg_id, { onIOPub, idle: !requireIdle, resolve, reject });
      const socket = channel === "shell" ? this.shell : this.control;
      socket.send(this.codec.encode(message)).catch((error: Error) => {
        this.pending.delete(message.header.msg_id);
        reject(new KernelDiedError(`Could not reach the kernel: ${error.message}`));
      });
    });
  }

  /**
   * iopub is a PUB socket: what it publishes before our subscription reaches it is lost, so keep
   * asking kernel_info until both its reply and its iopub status arrive (jupyter_client does the same).
   */
  private async waitReady(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    let settle!: (outcome: KernelMessage.IMessage | Error) => void;
    const outcome = new Promise<KernelMessage.IMessage | Error>((r) => (settle = r));
    const deadline = Date.now() + timeoutMs;
    const asked: string[] = [];
    let result: KernelMessage.IMessage | Error | undefined;
    void outcome.then((o) => (result = o));
    while (result === undefined && Date.now() < deadline) {
      if (signal?.aborted) throw new InterruptedError("Interrupted while the kernel was starting.");
      const message = this.codec.request<KernelMessage.IInfoRequestMsg>("shell", "kernel_info_request", {});
      asked.push(message.header.msg_id);
      this.request("shell", message).then(settle, settle);
      await Promise.race([outcome, new Promise((r) => setTimeout(r, 1000))]);
    }
    for (const id of asked) this.pending.delete(id);
    if (result instanceof Error) throw new UserFacingError(`The '${this.spec.name}' kernel failed to start: ${result.message}`);
    if (result === undefined) {
      throw new UserFacingError(`The '${this.spec.name}' kernel did not answer within ${Math.round(timeoutMs / 1000)} s; raise --startup-timeout or check that the kernel starts on its own.`);
    }
    this.info = result.content as KernelMessage.IInfoReply;
  }

  async execute(code: string, onIOPub: (message: KernelMessage.IIOPubMessage) => void): Promise<ExecuteReply> {
    const message = this.codec.request<KernelMessage.IExecuteRequestMsg>("shell", "execute_request", {
      code,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: false,
      stop_on_error: false,
    });
    const reply = await this.request("shell", message, onIOPub);
    return reply.content as ExecuteReply;
  }

  async interrupt(): Promise<void> {
    if (this.exited) return;
    if (this.spec.interruptMode === "message") {
      const message = this.codec.request<KernelMessage.IInterruptRequestMsg>("control", "interrupt_request", {});
      await Promise.race([this.request("control", message, undefined, false).catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
    } else {
      signalTree(this.child.pid!, "SIGINT");
    }
  }

  async shutdown(options: { force?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const pid = this.child?.pid;
    if (pid !== undefined) {
      const helpers = descendants(pid);
      if (!options.force && !this.exited) {
        // The message types have no shutdown_request; its content is just `restart`.
        const message = this.codec.request<KernelMessage.IMessage<"shutdown_request">>("control", "shutdown_request", { restart: false } as never);
        void this.request("control", message, undefined, false).catch(() => undefined);
        await waitForExit([pid], 5000);
      }
      signalTree(pid, "SIGKILL");
      // Helpers get a moment to save what matters (checkpoints are written atomically) before they are killed.
      const left = helpers.filter(isAlive);
      if (left.length > 0 && !options.force) {
        for (const p of left) signalTree(p, "SIGTERM");
        await waitForExit(left, 3000);
      }
      for (const p of left.filter(isAlive)) signalTree(p, "SIGKILL");
      await waitForExit([pid, ...left], 3000);
    }
    process.removeListener("exit", this.onProcessExit);
    for (const socket of [this.shell, this.control, this.iopub]) socket.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Last resort when the runner exits without a shutdown: nothing may outlive it. */
  private killNow(): void {
    const pid = this.child?.pid;
    if (pid === undefined || this.closed) return;
    for (const p of [pid, ...descendants(pid)]) signalTree(p, "SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}
