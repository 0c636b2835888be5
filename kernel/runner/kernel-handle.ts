import type { KernelMessage } from "@jupyterlab/services";

/** What the executor needs from a running kernel, local (ZeroMQ) or remote (Jupyter Server). */
export interface KernelHandle {
  /** kernel_info_reply's content, read once the kernel answered. */
  readonly info: KernelMessage.IInfoReply;
  /** Short text for progress lines ("tunelab (local, pid 123)", "python3 on http://host:8888"). */
  readonly description: string;
  /**
   * Runs one cell. Every iopub message whose parent is this request goes to `onIOPub`; resolves
   * with the execute_reply's content once the reply and the kernel's `idle` for it have arrived.
   * Rejects with `KernelDiedError` when the kernel goes away meanwhile.
   */
  execute(code: string, onIOPub: (message: KernelMessage.IIOPubMessage) => void): Promise<KernelMessage.IExecuteReplyMsg["content"]>;
  interrupt(): Promise<void>;
  /** Asks the kernel to shut down, then makes sure it and its children are gone. `force` skips the asking. */
  shutdown(options?: { force?: boolean }): Promise<void>;
}

export class KernelDiedError extends Error {}
