import type { ChildProcess } from "node:child_process";
import type { Request } from "../rpc/envelope.js";
import type { Transport } from "../rpc/client.js";

/** The RpcClient's transport over a forked child's IPC channel. */
export class IpcTransport implements Transport {
  private closeHandlers: Array<(reason: string) => void> = [];
  private closed = false;

  constructor(private readonly child: ChildProcess, private readonly describeExit: (code: number | null, signal: NodeJS.Signals | null) => string) {
    child.once("exit", (code, signal) => this.fireClose(describeExit(code, signal)));
    child.once("error", (error) => this.fireClose(error.message));
  }

  send(request: Request): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.closed || !this.child.connected) {
        reject(new Error("the worker's channel is closed"));
        return;
      }
      this.child.send(request, (error) => (error ? reject(error) : resolve()));
    });
  }

  onMessage(handler: (message: unknown) => void): void {
    this.child.on("message", handler);
  }

  onClose(handler: (reason: string) => void): void {
    this.closeHandlers.push(handler);
  }

  async close(): Promise<void> {
    if (this.child.connected) this.child.disconnect();
    this.fireClose("closed");
  }

  private fireClose(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const handler of this.closeHandlers) handler(reason);
  }
}
