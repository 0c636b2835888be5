import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { join } from "node:path";
import { Dealer, Request, Subscriber } from "zeromq";
import { PACKAGE_ROOT } from "../../kernel/paths.js";

/**
 * A small Jupyter client over real ZeroMQ sockets, for tests that need the wire itself (forged
 * signatures, heartbeat timing, signals). It starts `tunelab kernel` in its own process group, the
 * way jupyter_client does, so a group SIGINT reaches the kernel only.
 */
export interface WireMessage {
  header: { msg_id: string; msg_type: string; session: string; [k: string]: unknown };
  parent_header: { msg_id?: string; [k: string]: unknown };
  metadata: Record<string, unknown>;
  content: Record<string, any>;
}

export interface ExecuteResult {
  reply: WireMessage;
  /** iopub messages for the request, from busy to idle (both included). */
  iopub: WireMessage[];
}

const ROOT = PACKAGE_ROOT;
const DELIM = Buffer.from("<IDS|MSG>");

export interface StartOptions {
  /** The command line after the connection file is appended; defaults to this checkout's kernel. */
  argv?: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Connection-file argument form, e.g. ["--config-path"] for tslab. */
  connectionFlag?: string[];
  /** Signing key; empty string disables signing. */
  key?: string;
  /** ipc (default: no ports to race for) or tcp on loopback (for kernels that only speak tcp). */
  transport?: "ipc" | "tcp";
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === "object" && address ? address.port : 0));
    });
  });
}

export class KernelClient {
  readonly key: string;
  readonly session = randomUUID();
  readonly child: ChildProcess;
  readonly dir: string;
  private readonly shell = new Dealer({ linger: 0 });
  private readonly control = new Dealer({ linger: 0 });
  private readonly iopub = new Subscriber({ linger: 0 });
  private hb = new Request({ linger: 0, receiveTimeout: 2000, sendTimeout: 2000 });
  private readonly messages: WireMessage[] = [];
  private readonly shellReplies: WireMessage[] = [];
  private readonly controlReplies: WireMessage[] = [];
  private readonly waiters = new Set<() => void>();
  private stderrText = "";
  private closed = false;

  private constructor(readonly endpoints: Record<"shell" | "control" | "iopub" | "stdin" | "hb", string>, options: StartOptions, dir: string, connectionFile: string) {
    this.key = options.key ?? randomUUID();
    this.dir = dir;
    const argv = options.argv ?? [process.execPath, join(ROOT, "bin", "tunelab.js"), "kernel"];
    this.child = spawn(argv[0], [...argv.slice(1), ...(options.connectionFlag ?? []), connectionFile], {
      cwd: options.cwd ?? dir,
      // JPY_PARENT_PID: a kernel left behind by a crashed test run exits by itself.
      env: { ...(options.env ?? process.env), JPY_PARENT_PID: String(process.pid) },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    this.child.stdout?.on("data", (d: Buffer) => (this.stderrText += d.toString()));
    this.child.stderr?.on("data", (d: Buffer) => (this.stderrText += d.toString()));
  }

  /** Writes a connection file (ipc endpoints in a private directory) and starts the kernel. */
  static async start(options: StartOptions = {}): Promise<KernelClient> {
    const dir = mkdtempSync(join(tmpdir(), "tunelab-kernel-"));
    const key = options.key ?? randomUUID();
    const tcp = options.transport === "tcp";
    const ports = tcp ? [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()] : [1, 2, 3, 4, 5];
    const info = {
      transport: tcp ? "tcp" : "ipc",
      ip: tcp ? "127.0.0.1" : join(dir, "k"),
      key,
      signature_scheme: "hmac-sha256",
      shell_port: ports[0],
      iopub_port: ports[1],
      stdin_port: ports[2],
      control_port: ports[3],
      hb_port: ports[4],
      kernel_name: "test",
    };
    const connectionFile = join(dir, "connection.json");
    writeFileSync(connectionFile, JSON.stringify(info));
    const at = (i: number) => (tcp ? `tcp://127.0.0.1:${ports[i]}` : `ipc://${info.ip}-${ports[i]}`);
    const client = new KernelClient({ shell: at(0), iopub: at(1), stdin: at(2), control: at(3), hb: at(4) }, { ...options, key }, dir, connectionFile);
    client.connect();
    return client;
  }

  /** Elapsed ms from spawn until a kernel_info_reply (and iopub is flowing). */
  async ready(timeoutMs = 90_000): Promise<WireMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`the kernel exited with ${this.child.exitCode}:\n${this.stderrText}`);
      const id = await this.send("shell", "kernel_info_request", {});
      try {
        const reply = await this.reply("shell", id, 1500);
        await this.waitFor(() => this.messages.some((m) => m.parent_header.msg_id === id && m.header.msg_type === "status"), 1500);
        return reply;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`the kernel did not answer kernel_info in ${timeoutMs} ms:\n${this.stderrText}`, { cause: error });
      }
    }
  }

  get log(): string {
    return this.stderrText;
  }

  /** Sends a request; `sign: false` sends an empty signature, `key` signs with another key. */
  async send(channel: "shell" | "control", msgType: string, content: Record<string, unknown>, forge: { sign?: boolean; key?: string } = {}): Promise<string> {
    const header = { msg_id: randomUUID(), session: this.session, username: "test", date: new Date().toISOString(), msg_type: msgType, version: "5.3" };
    const parts = [header, {}, {}, content].map((p) => Buffer.from(JSON.stringify(p)));
    const key = forge.key ?? this.key;
    const signature = forge.sign === false || key === "" ? "" : createHmac("sha256", key).update(Buffer.concat(parts)).digest("hex");
    await (channel === "shell" ? this.shell : this.control).send([DELIM, Buffer.from(signature), ...parts]);
    return header.msg_id;
  }

  async reply(channel: "shell" | "control", msgId: string, timeoutMs = 60_000): Promise<WireMessage> {
    const list = channel === "shell" ? this.shellReplies : this.controlReplies;
    const find = () => list.find((m) => m.parent_header.msg_id === msgId);
    await this.waitFor(() => find() !== undefined, timeoutMs, `no ${channel} reply to ${msgId}`);
    return find()!;
  }

  /** iopub messages of one request until its `idle` status. */
  async iopubFor(msgId: string, timeoutMs = 60_000): Promise<WireMessage[]> {
    const mine = () => this.messages.filter((m) => m.parent_header.msg_id === msgId);
    await this.waitFor(() => mine().some((m) => m.header.msg_type === "status" && m.content.execution_state === "idle"), timeoutMs, `no idle for ${msgId}`);
    return mine();
  }

  hasReply(channel: "shell" | "control", msgId: string): boolean {
    return (channel === "shell" ? this.shellReplies : this.controlReplies).some((m) => m.parent_header.msg_id === msgId);
  }

  iopubSoFar(msgId: string): WireMessage[] {
    return this.messages.filter((m) => m.parent_header.msg_id === msgId);
  }

  async execute(code: string, options: { timeoutMs?: number; silent?: boolean; storeHistory?: boolean; stopOnError?: boolean } = {}): Promise<ExecuteResult> {
    const id = await this.startExecute(code, options);
    const reply = await this.reply("shell", id, options.timeoutMs ?? 60_000);
    const iopub = await this.iopubFor(id, options.timeoutMs ?? 60_000);
    return { reply, iopub };
  }

  startExecute(code: string, options: { silent?: boolean; storeHistory?: boolean; stopOnError?: boolean } = {}): Promise<string> {
    return this.send("shell", "execute_request", {
      code,
      silent: options.silent ?? false,
      store_history: options.storeHistory ?? true,
      user_expressions: {},
      allow_stdin: false,
      stop_on_error: options.stopOnError ?? true,
    });
  }

  /** One heartbeat round trip in milliseconds; Infinity when no echo came within `timeoutMs`. */
  async ping(payload = "ping", timeoutMs = 2000): Promise<number> {
    const started = process.hrtime.bigint();
    try {
      await this.hb.send(payload);
      const [echo] = await this.hb.receive();
      if (echo.toString() !== payload) throw new Error(`heartbeat echoed ${echo.toString()}`);
    } catch (error) {
      if ((error as { code?: string }).code !== "EAGAIN") throw error;
      // A REQ socket that timed out is stuck mid-exchange: start a fresh one, as jupyter_client does.
      this.hb.close();
      this.hb = new Request({ linger: 0, receiveTimeout: timeoutMs, sendTimeout: timeoutMs });
      this.hb.connect(this.endpoints.hb);
      return Number.POSITIVE_INFINITY;
    }
    return Number(process.hrtime.bigint() - started) / 1e6;
  }

  /** SIGINT to the kernel's process group, as jupyter_client's interrupt_kernel does. */
  interrupt(): void {
    if (this.child.pid) process.kill(-this.child.pid, "SIGINT");
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.child.exitCode === null && this.child.signalCode === null) {
      try {
        const id = await this.send("control", "shutdown_request", { restart: false });
        await this.reply("control", id, 5000);
      } catch {
        // fall through to the kill below
      }
      const exited = new Promise((r) => this.child.once("exit", r));
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (this.child.exitCode === null && this.child.signalCode === null && this.child.pid) {
        try {
          process.kill(-this.child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    for (const s of [this.shell, this.control, this.iopub, this.hb]) s.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async waitFor(predicate: () => boolean, timeoutMs: number, what = "condition"): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          r();
        };
        const timer = setTimeout(wake, 50);
        this.waiters.add(wake);
      });
    }
  }

  private connect(): void {
    this.shell.connect(this.endpoints.shell);
    this.control.connect(this.endpoints.control);
    this.iopub.connect(this.endpoints.iopub);
    this.iopub.subscribe();
    this.hb.connect(this.endpoints.hb);
    this.pump(this.shell, this.shellReplies);
    this.pump(this.control, this.controlReplies);
    this.pump(this.iopub, this.messages);
  }

  private pump(socket: Dealer | Subscriber, into: WireMessage[]): void {
    void (async () => {
      try {
        for await (const frames of socket) {
          const at = frames.findIndex((f) => f.equals(DELIM));
          const [header, parent, metadata, content] = frames.slice(at + 2, at + 6).map((f) => JSON.parse(f.toString()) as unknown);
          into.push({ header, parent_header: parent, metadata, content } as WireMessage);
          for (const wake of [...this.waiters]) wake();
        }
      } catch {
        // socket closed
      }
    })();
  }
}
