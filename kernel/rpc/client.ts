import { isReply, PROTOCOL_VERSION, type ErrorBody, type Reply, type Request } from "./envelope.js";
import { UserFacingError } from "../errors.js";

/** How a client reaches its child: ZeroMQ for the bridge, Node IPC for the ANE worker. */
export interface Transport {
  send(request: Request): Promise<void>;
  /** Called for every message from the child. */
  onMessage(handler: (message: unknown) => void): void;
  /** Called once when the child is gone (crash, exit, closed socket), with a reason. */
  onClose(handler: (reason: string) => void): void;
  close(): Promise<void>;
}

/** A child answered a request with an `error` envelope. */
export class RemoteError extends UserFacingError {
  constructor(readonly body: ErrorBody, ename = "TunelabError") {
    super(body.message, ename, body.detail);
  }
  get code(): string {
    return this.body.code;
  }
}

/** The child died or the connection closed while a request was in flight. */
export class ChildGoneError extends UserFacingError {}

export interface CallOptions {
  onEvent?: (event: string, data: Record<string, unknown>) => void;
  /** Aborting sends `cancel {id}`; the call still resolves with whatever the child answers. */
  signal?: AbortSignal;
}

interface Pending {
  resolve(data: Record<string, unknown>): void;
  reject(error: Error): void;
  onEvent?: CallOptions["onEvent"];
}

/** Request/stream/cancel over any transport; one instance per live child. */
export class RpcClient {
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedReason: string | undefined;

  constructor(private readonly transport: Transport, private readonly childName: string) {
    transport.onMessage((message) => this.dispatch(message));
    transport.onClose((reason) => this.failAll(reason));
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  call(method: string, params: Record<string, unknown> = {}, options: CallOptions = {}): Promise<Record<string, unknown>> {
    if (this.closedReason !== undefined) {
      return Promise.reject(new ChildGoneError(`The ${this.childName} is not running (${this.closedReason}); run the cell again to start a fresh one.`));
    }
    const id = `r${this.nextId++}`;
    const { signal, onEvent } = options;
    return new Promise((resolve, reject) => {
      const cleanup = () => signal?.removeEventListener("abort", onAbort);
      const onAbort = () => {
        void this.transport.send({ v: PROTOCOL_VERSION, id: `c${this.nextId++}`, method: "cancel", params: { id } }).catch(() => undefined);
      };
      this.pending.set(id, {
        resolve: (data) => (cleanup(), resolve(data)),
        reject: (error) => (cleanup(), reject(error)),
        onEvent,
      });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
      this.transport.send({ v: PROTOCOL_VERSION, id, method, params }).catch((error: Error) => {
        this.pending.get(id)?.reject(new ChildGoneError(`Could not reach the ${this.childName}: ${error.message}`));
        this.pending.delete(id);
      });
    });
  }

  async close(): Promise<void> {
    this.failAll("closed");
    await this.transport.close();
  }

  private dispatch(message: unknown): void {
    if (!isReply(message)) return;
    const reply: Reply = message;
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    if (reply.type === "event") {
      pending.onEvent?.(reply.event, reply.data ?? {});
      return;
    }
    this.pending.delete(reply.id);
    if (reply.type === "result") pending.resolve(reply.data ?? {});
    else pending.reject(new RemoteError(reply.error));
  }

  private failAll(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      pending.reject(new ChildGoneError(`The ${this.childName} stopped while working (${reason}); what was saved so far is kept, and the next magic starts a fresh one.`));
    }
  }
}
