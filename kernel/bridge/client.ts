import { join } from "node:path";
import { UserFacingError } from "../errors.js";
import { ChildGoneError, RpcClient, type CallOptions } from "../rpc/client.js";
import type { Disposable, ServiceKey } from "../session/services.js";
import { clientKeys } from "./curve.js";
import { killGroup, launchBridge, privateSocketDir, type RunningBridge } from "./local.js";
import { generateEvent, tuneEvent, type GenerateEvent, type TuneEvent } from "./events.js";
import { ZmqTransport } from "./transport.js";
import type { AdaptersExportParams } from "./params.generated.js";
import type { AdapterExport, AdapterList, BridgeStatus, GenerateParams, GenerateResult, ModelInfo, TuneParams, TuneResult } from "./types.js";

export interface BridgeClientOptions {
  /** Where runs/<name>/ go when this client starts the bridge itself. */
  runsDir?: string;
  /** `tcp://host:port` of a bridge already running elsewhere (TUNELAB_BRIDGE_URL). */
  remoteUrl?: string;
  python?: string;
  env?: NodeJS.ProcessEnv;
  /** How long a remote bridge may take to answer the first ping. */
  connectTimeoutMs?: number;
}

interface Connection {
  rpc: RpcClient;
  transport: ZmqTransport;
  endpoint: string;
  local?: RunningBridge & { removeSocketDir(): void };
}

/** CallOptions whose events arrive checked and typed (events.ts). */
export interface TypedCallOptions<E> {
  signal?: AbortSignal;
  onEvent?: (event: E) => void;
}

function typed<E>(options: TypedCallOptions<E>, decode: (event: string, data: Record<string, unknown>) => E | null): CallOptions {
  const { onEvent, signal } = options;
  return {
    signal,
    onEvent: onEvent
      ? (event, data) => {
          const decoded = decode(event, data);
          if (decoded) onEvent(decoded);
        }
      : undefined,
  };
}

const LOOPBACK = /^tcp:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)(:\d+)?$/i;

export function isLoopback(url: string): boolean {
  return url.startsWith("ipc://") || url.startsWith("inproc://") || LOOPBACK.test(url);
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The kernel's handle on the MLX bridge. The bridge starts on the first call, lives in its own
 * process group, and is replaced by a fresh one on the next call after it dies: a crash fails
 * the calls in flight with a sentence, never the kernel.
 */
export class BridgeClient implements Disposable {
  private connection: Connection | undefined;
  private connecting: Promise<Connection> | undefined;
  private runsDir: string;
  private disposed = false;

  constructor(private readonly options: BridgeClientOptions = {}) {
    this.runsDir = options.runsDir ?? join(process.cwd(), "runs");
  }

  /** The notebook's runs/ directory; takes effect when the bridge (re)starts. */
  setRunsDir(dir: string): void {
    this.runsDir = dir;
  }

  get remoteUrl(): string | undefined {
    return this.options.remoteUrl;
  }

  /** The pid of the bridge this client started, if one is running. */
  get pid(): number | undefined {
    const child = this.connection?.local?.child;
    return child && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  get running(): boolean {
    return this.connection !== undefined && !this.connection.rpc.closed;
  }

  async call(method: string, params: Record<string, unknown> = {}, options: CallOptions = {}): Promise<Record<string, unknown>> {
    if (this.disposed) throw new UserFacingError("The kernel is shutting down; the MLX bridge is no longer available.");
    const connection = await this.connect();
    return connection.rpc.call(method, params, options);
  }

  ping(): Promise<{ pong: boolean; time: number }> {
    return this.call("ping") as Promise<{ pong: boolean; time: number }>;
  }

  status(): Promise<BridgeStatus> {
    return this.call("status") as Promise<unknown> as Promise<BridgeStatus>;
  }

  loadModel(model: string | null, options: CallOptions = {}): Promise<ModelInfo> {
    return this.call("load_model", { model }, options) as Promise<unknown> as Promise<ModelInfo>;
  }

  tune(params: TuneParams, options: TypedCallOptions<TuneEvent> = {}): Promise<TuneResult> {
    return this.call("tune", { ...params }, typed(options, tuneEvent)) as Promise<unknown> as Promise<TuneResult>;
  }

  generate(params: GenerateParams, options: TypedCallOptions<GenerateEvent> = {}): Promise<GenerateResult> {
    return this.call("generate", { ...params }, typed(options, generateEvent)) as Promise<unknown> as Promise<GenerateResult>;
  }

  listAdapters(): Promise<AdapterList> {
    return this.call("adapters.list") as Promise<unknown> as Promise<AdapterList>;
  }

  switchAdapter(name: string): Promise<{ active: string | null; ms: number }> {
    return this.call("adapters.switch", { name }) as Promise<unknown> as Promise<{ active: string | null; ms: number }>;
  }

  exportAdapter(params: AdaptersExportParams, options: CallOptions = {}): Promise<AdapterExport> {
    return this.call("adapters.export", { ...params }, options) as Promise<unknown> as Promise<AdapterExport>;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const connection = this.connection ?? (await this.connecting?.catch(() => undefined));
    this.connection = undefined;
    if (connection) await this.stop(connection);
  }

  private async connect(): Promise<Connection> {
    if (this.connection && !this.connection.rpc.closed) return this.connection;
    if (this.connection) {
      // The previous bridge is gone; make sure nothing of it lingers before starting another.
      const old = this.connection;
      this.connection = undefined;
      await this.stop(old);
    }
    if (!this.connecting) {
      this.connecting = (this.options.remoteUrl ? this.connectRemote(this.options.remoteUrl) : this.startLocal()).finally(() => {
        this.connecting = undefined;
      });
    }
    const connection = await this.connecting;
    this.connection = connection;
    return connection;
  }

  private async startLocal(): Promise<Connection> {
    const socket = privateSocketDir();
    let running: RunningBridge;
    try {
      running = await launchBridge({
        listen: socket.endpoint,
        runsDir: this.runsDir,
        parentPid: process.pid,
        python: this.options.python,
        env: this.options.env,
      });
    } catch (error) {
      socket.remove();
      throw error;
    }
    const transport = new ZmqTransport({ endpoint: running.endpoint });
    const rpc = new RpcClient(transport, "MLX bridge");
    void running.exited.then((how) => {
      const tail = running.stderrTail().split("\n").filter(Boolean).pop();
      // A plain exit shows the bridge's last words; a described crash already says what to do.
      const plainExit = /^the bridge process exited with code [1-9]/.test(how);
      transport.shut(tail && plainExit ? `${how}: ${tail}` : how);
      socket.remove();
    });
    return { rpc, transport, endpoint: running.endpoint, local: { ...running, removeSocketDir: socket.remove } };
  }

  private async connectRemote(url: string): Promise<Connection> {
    const keys = clientKeys(this.options.env ?? process.env);
    if (!keys && !isLoopback(url)) {
      throw new UserFacingError(
        `TUNELAB_BRIDGE_URL points at ${url}, which is not loopback: set TUNELAB_BRIDGE_SERVER_KEY (and the client keys) that \`tunelab bridge\` printed on that machine.`,
      );
    }
    const transport = new ZmqTransport({ endpoint: url, curve: keys ?? undefined, failOnDisconnect: true });
    const rpc = new RpcClient(transport, "remote MLX bridge");
    const timeoutMs = this.options.connectTimeoutMs ?? Number(process.env.TUNELAB_BRIDGE_TIMEOUT_S ?? 20) * 1000;
    try {
      await withTimeout(rpc.call("ping"), timeoutMs, () =>
        new UserFacingError(
          `The remote MLX bridge at ${url} did not answer within ${Math.round(timeoutMs / 1000)} s; check that \`tunelab bridge\` runs there and that TUNELAB_BRIDGE_SERVER_KEY and this machine's client key match what it printed.`,
        ),
      );
    } catch (error) {
      transport.shut("no answer");
      if (error instanceof ChildGoneError) {
        throw new UserFacingError(`Could not reach the remote MLX bridge at ${url} (${error.message}); check its address and CURVE keys.`);
      }
      throw error;
    }
    return { rpc, transport, endpoint: url };
  }

  /** Asks the bridge to shut down, then makes sure its process group is gone. */
  private async stop(connection: Connection): Promise<void> {
    const local = connection.local;
    if (local && !connection.rpc.closed) {
      await withTimeout(connection.rpc.call("shutdown"), 3000, () => new Error("timeout")).catch(() => undefined);
    }
    if (local) {
      const exited = await withTimeout(local.exited, 2000, () => new Error("timeout")).catch(() => undefined);
      if (exited === undefined) {
        killGroup(local.child, "SIGKILL");
        await withTimeout(local.exited, 5000, () => new Error("timeout")).catch(() => undefined);
      }
      local.removeSocketDir();
    }
    connection.transport.shut("closed");
  }
}

/** The kernel's one bridge client, created on first use by a magic. */
export const BRIDGE: ServiceKey<BridgeClient> = {
  name: "mlx-bridge",
  create: () => new BridgeClient({ remoteUrl: process.env.TUNELAB_BRIDGE_URL || undefined }),
};
