import { randomUUID } from "node:crypto";
import { Worker } from "node:worker_threads";
import { Publisher, Router, type Socket } from "zeromq";
import { endpoint, type ConnectionInfo } from "./connection.js";
import { decode, encode, makeHeader, Signer, WireError, type Header, type JsonObject, type Message } from "./wire.js";

export type RequestChannel = "shell" | "control" | "stdin";

export interface SocketOptions {
  /** Where protocol problems are reported (never a cell's output). */
  log(line: string): void;
}

/**
 * zeromq v6 allows one send in flight per socket: sends are chained so that callers can fire and
 * forget while the order of messages on each socket is kept.
 */
class Outbox {
  private tail: Promise<void> = Promise.resolve();
  constructor(private readonly socket: Socket & { send(frames: Buffer[]): Promise<void> }, private readonly log: (line: string) => void) {}

  send(frames: Buffer[]): Promise<void> {
    this.tail = this.tail.then(
      () => (this.socket.closed ? undefined : this.socket.send(frames)),
    ).catch((error: Error) => this.log(`tunelab: send failed: ${error.message}`));
    return this.tail;
  }

  drain(): Promise<void> {
    return this.tail;
  }
}

/** The kernel's five sockets: receives requests, sends replies, publishes on iopub; knows nothing about what runs. */
export class KernelSockets {
  readonly session = randomUUID();
  private readonly signer: Signer;
  private readonly routers: Record<RequestChannel, Router>;
  private readonly outboxes: Record<RequestChannel | "iopub", Outbox>;
  private readonly iopub: Publisher;
  private heartbeat: Worker | undefined;
  private closed = false;

  constructor(private readonly info: ConnectionInfo, private readonly options: SocketOptions) {
    this.signer = new Signer(info.key);
    this.routers = { shell: new Router({ linger: 0 }), control: new Router({ linger: 0 }), stdin: new Router({ linger: 0 }) };
    this.iopub = new Publisher({ linger: 1000 });
    const log = options.log;
    this.outboxes = {
      shell: new Outbox(this.routers.shell, log),
      control: new Outbox(this.routers.control, log),
      stdin: new Outbox(this.routers.stdin, log),
      iopub: new Outbox(this.iopub, log),
    };
  }

  async bind(): Promise<void> {
    const heartbeat = this.startHeartbeat();
    await Promise.all([
      this.routers.shell.bind(endpoint(this.info, "shell")),
      this.routers.control.bind(endpoint(this.info, "control")),
      this.routers.stdin.bind(endpoint(this.info, "stdin")),
      this.iopub.bind(endpoint(this.info, "iopub")),
      heartbeat,
    ]);
  }

  /** Calls `handler` for every correctly signed message on a channel; others are dropped and logged. */
  listen(channel: RequestChannel, handler: (message: Message) => void): void {
    const socket = this.routers[channel];
    void (async () => {
      try {
        for await (const frames of socket) {
          let message: Message;
          try {
            message = decode(frames, this.signer);
          } catch (error) {
            if (!(error instanceof WireError)) throw error;
            this.options.log(`tunelab: dropped a message on ${channel}: ${error.message}`);
            continue;
          }
          handler(message);
        }
      } catch (error) {
        if (!this.closed) this.options.log(`tunelab: ${channel} socket failed: ${(error as Error).message}`);
      }
    })();
  }

  /** Answers `request` on its channel, to the identities it came from. */
  reply(channel: RequestChannel, request: Message, msgType: string, content: JsonObject, metadata: JsonObject = {}): Promise<void> {
    const message: Message = {
      identities: request.identities,
      header: makeHeader(msgType, this.session),
      parent_header: request.header,
      metadata,
      content,
      buffers: [],
    };
    return this.outboxes[channel].send(encode(message, this.signer));
  }

  /** Publishes on iopub; `parent` is the request the message belongs to. */
  publish(msgType: string, content: JsonObject, parent: Header | undefined, metadata: JsonObject = {}): Promise<void> {
    const message: Message = {
      identities: [Buffer.from(`kernel.${this.session}.${msgType}`)],
      header: makeHeader(msgType, this.session),
      parent_header: parent ?? {},
      metadata,
      content,
      buffers: [],
    };
    return this.outboxes.iopub.send(encode(message, this.signer));
  }

  /** Resolves once every message published so far has been handed to ZeroMQ. */
  flushed(): Promise<void> {
    return this.outboxes.iopub.drain();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(Object.values(this.outboxes).map((o) => o.drain()));
    for (const socket of Object.values(this.routers)) socket.close();
    this.iopub.close();
    if (this.heartbeat) {
      // Terminating a thread inside a ZeroMQ call aborts the process: let it close its socket and end.
      const worker = this.heartbeat;
      const ended = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
      worker.postMessage({ close: true });
      const timer = setTimeout(() => void worker.terminate(), 2000);
      await ended;
      clearTimeout(timer);
    }
  }

  private startHeartbeat(): Promise<void> {
    const worker = new Worker(new URL("./heartbeat-thread.js", import.meta.url), { workerData: { url: endpoint(this.info, "hb") } });
    worker.unref();
    this.heartbeat = worker;
    return new Promise((resolve, reject) => {
      worker.on("message", (message: { bound?: boolean; error?: string }) => {
        if (message.bound) resolve();
        if (message.error) {
          this.options.log(`tunelab: heartbeat failed: ${message.error}`);
          reject(new Error(`the heartbeat socket failed: ${message.error}`));
        }
      });
      worker.on("error", (error) => reject(error));
    });
  }
}
