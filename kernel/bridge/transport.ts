import { Dealer } from "zeromq";
import type { Request } from "../rpc/envelope.js";
import type { Transport } from "../rpc/client.js";
import type { KeyPair } from "./curve.js";

export interface ZmqTransportOptions {
  endpoint: string;
  /** CURVE client keys; required for anything that is not loopback. */
  curve?: { serverKey: string; pair: KeyPair };
  /**
   * Fail waiting calls when a connected peer goes away. A bridge this kernel started reports its
   * own exit (with a better reason), so only remote connections need this.
   */
  failOnDisconnect?: boolean;
}

/**
 * One DEALER socket to the bridge's ROUTER: one JSON object per frame. zeromq.js allows a single
 * send in flight per socket, so sends are chained; the receive loop is the socket's only reader.
 */
export class ZmqTransport implements Transport {
  private readonly socket: Dealer;
  private messageHandler: ((message: unknown) => void) | undefined;
  private closeHandlers: Array<(reason: string) => void> = [];
  private sending: Promise<void> = Promise.resolve();
  private closedReason: string | undefined;
  private everConnected = false;

  constructor(readonly options: ZmqTransportOptions) {
    this.socket = new Dealer({
      linger: 0,
      ...(options.curve
        ? {
            curveServerKey: options.curve.serverKey,
            curvePublicKey: options.curve.pair.publicKey,
            curveSecretKey: options.curve.pair.secretKey,
          }
        : {}),
    });
    this.socket.connect(options.endpoint);
    void this.receive();
    void this.watch();
  }

  send(request: Request): Promise<void> {
    if (this.closedReason !== undefined) return Promise.reject(new Error(`connection closed (${this.closedReason})`));
    const payload = JSON.stringify(request);
    const next = this.sending.then(() => this.socket.send(payload));
    this.sending = next.catch(() => undefined);
    return next;
  }

  onMessage(handler: (message: unknown) => void): void {
    this.messageHandler = handler;
  }

  onClose(handler: (reason: string) => void): void {
    if (this.closedReason !== undefined) handler(this.closedReason);
    else this.closeHandlers.push(handler);
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Ends the connection and fails whatever waits on it with `reason`. */
  shut(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    if (!this.socket.closed) this.socket.close();
    const handlers = this.closeHandlers;
    this.closeHandlers = [];
    for (const handler of handlers) handler(reason);
  }

  async close(): Promise<void> {
    this.shut("closed");
  }

  private async receive(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        // A ROUTER may prepend an empty delimiter (REQ-style peers); the payload is the last frame.
        const frame = frames[frames.length - 1];
        if (!frame || frame.length === 0) continue;
        let message: unknown;
        try {
          message = JSON.parse(frame.toString("utf8"));
        } catch {
          continue;
        }
        this.messageHandler?.(message);
      }
      this.shut("connection closed");
    } catch (error) {
      this.shut(`connection failed: ${(error as Error).message}`);
    }
  }

  /**
   * A disconnect after a completed handshake means the bridge went away: its jobs are lost even
   * if ZeroMQ would reconnect to a restarted one, so waiting calls must fail rather than hang.
   */
  private async watch(): Promise<void> {
    try {
      for await (const event of this.socket.events) {
        if (event.type === "handshake") this.everConnected = true;
        else if (event.type === "disconnect" && this.everConnected && this.options.failOnDisconnect) this.shut("the connection to the bridge was lost");
        else if (event.type === "handshake:error:auth" || event.type === "handshake:error:protocol") {
          this.shut("the bridge refused this client's CURVE keys");
        }
        if (this.closedReason !== undefined) break;
      }
    } catch {
      // The socket was closed; `shut` has already reported why.
    }
  }
}
