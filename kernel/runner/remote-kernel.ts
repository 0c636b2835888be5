import type { Kernel, KernelMessage, ServerConnection as ServerConnectionNs, Session } from "@jupyterlab/services";
import { UserFacingError } from "../errors.js";
import { KernelDiedError, type KernelHandle } from "./kernel-handle.js";

type Services = typeof import("@jupyterlab/services");

export interface RemoteOptions {
  /** The server's base URL, e.g. http://mac.local:8888/ */
  url: string;
  token: string;
  kernelName: string;
  /** The session's notebook path on the server (relative to its root); the kernel runs in its folder. */
  path: string;
  startupTimeoutMs: number;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new UserFacingError(message)), ms)))]).finally(() => clearTimeout(timer));
}

/**
 * A kernel on a running Jupyter Server, reached through @jupyterlab/services (REST for the
 * session, a WebSocket for the messages): the notebook runs on the machine that has the hardware.
 */
export class RemoteKernel implements KernelHandle {
  info!: KernelMessage.IInfoReply;
  private dead: string | undefined;
  private readonly onDeath = new Set<(reason: string) => void>();
  private closed = false;

  private constructor(
    private readonly options: RemoteOptions,
    private readonly kernels: InstanceType<Services["KernelManager"]>,
    private readonly sessions: InstanceType<Services["SessionManager"]>,
    private readonly session: Session.ISessionConnection,
    private readonly kernel: Kernel.IKernelConnection,
  ) {
    kernel.statusChanged.connect((_, status) => {
      if (status === "dead" || status === "autorestarting") this.die(`the server reports the kernel ${status === "dead" ? "dead" : "restarting"}`);
    });
    kernel.connectionStatusChanged.connect((_, status) => {
      if (status === "disconnected" && !this.closed) this.die("the connection to the server closed");
    });
  }

  get description(): string {
    return `${this.options.kernelName} on ${this.options.url}`;
  }

  static async start(options: RemoteOptions): Promise<RemoteKernel> {
    const services: Services = await import("@jupyterlab/services");
    const baseUrl = options.url.endsWith("/") ? options.url : `${options.url}/`;
    const serverSettings: ServerConnectionNs.ISettings = services.ServerConnection.makeSettings({
      baseUrl,
      wsUrl: baseUrl.replace(/^http/, "ws"),
      token: options.token,
      appendToken: true,
    });
    const kernels = new services.KernelManager({ serverSettings });
    const sessions = new services.SessionManager({ kernelManager: kernels, serverSettings });
    // Their first poll rejects when they are disposed before it ends (an unreachable server).
    kernels.ready.catch(() => undefined);
    sessions.ready.catch(() => undefined);
    const dispose = () => {
      sessions.dispose();
      kernels.dispose();
    };
    let session: Session.ISessionConnection;
    try {
      session = await withTimeout(
        sessions.startNew({ path: options.path, type: "notebook", name: options.path, kernel: { name: options.kernelName } }),
        options.startupTimeoutMs,
        `The Jupyter Server at ${options.url} did not start a '${options.kernelName}' kernel within ${options.startupTimeoutMs / 1000} s; check the server's log.`,
      );
    } catch (error) {
      dispose();
      throw explain(error, options);
    }
    const kernel = session.kernel;
    if (!kernel) {
      await session.shutdown().catch(() => undefined);
      dispose();
      throw new UserFacingError(`The Jupyter Server at ${options.url} started a session without a kernel; check that '${options.kernelName}' is installed there.`);
    }
    const remote = new RemoteKernel(options, kernels, sessions, session, kernel);
    try {
      remote.info = await withTimeout(kernel.info, options.startupTimeoutMs, `The '${options.kernelName}' kernel on ${options.url} did not answer within ${options.startupTimeoutMs / 1000} s; raise --startup-timeout.`);
    } catch (error) {
      await remote.shutdown();
      throw error;
    }
    return remote;
  }

  async execute(code: string, onIOPub: (message: KernelMessage.IIOPubMessage) => void): Promise<KernelMessage.IExecuteReplyMsg["content"]> {
    if (this.dead) throw new KernelDiedError(`The remote kernel is gone (${this.dead}).`);
    const future = this.kernel.requestExecute({ code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: false }, true);
    future.onIOPub = (message) => {
      if (message.header.msg_type !== "status") onIOPub(message);
    };
    let onDeath!: (reason: string) => void;
    const died = new Promise<never>((_, reject) => {
      onDeath = (reason) => reject(new KernelDiedError(`The remote kernel is gone (${reason}).`));
      this.onDeath.add(onDeath);
    });
    try {
      const reply = await Promise.race([future.done, died]);
      return reply.content;
    } catch (error) {
      if (error instanceof KernelDiedError) throw error;
      throw new KernelDiedError(`The remote kernel stopped answering: ${(error as Error).message}`);
    } finally {
      this.onDeath.delete(onDeath);
    }
  }

  async interrupt(): Promise<void> {
    await this.kernel.interrupt();
  }

  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Deleting the session shuts its kernel down on the server, with the server's own cleanup.
    await withTimeout(this.session.shutdown(), 15_000, "shutdown timed out").catch(() => this.kernel.shutdown().catch(() => undefined));
    this.session.dispose();
    this.sessions.dispose();
    this.kernels.dispose();
  }

  private die(reason: string): void {
    if (this.dead) return;
    this.dead = reason;
    for (const notify of this.onDeath) notify(reason);
  }
}

function explain(error: unknown, options: RemoteOptions): Error {
  const e = error as Error & { response?: { status?: number } };
  const status = e.response?.status;
  if (status === 403 || status === 401) return new UserFacingError(`The Jupyter Server at ${options.url} refused the token; pass the token the server printed with --token.`);
  if (status === 404 || /No such kernel|NoSuchKernel/.test(e.message)) return new UserFacingError(`The Jupyter Server at ${options.url} has no '${options.kernelName}' kernel; install it there (\`tunelab install\`) or pick one with --kernel.`);
  if (e.name === "NetworkError" || /fetch failed|ECONNREFUSED/.test(e.message)) return new UserFacingError(`Cannot reach a Jupyter Server at ${options.url}; check the URL and that the server is running.`);
  return e instanceof UserFacingError ? e : new UserFacingError(`The Jupyter Server at ${options.url} could not start the kernel: ${e.message}`);
}
