import { randomUUID } from "node:crypto";
import type { KernelMessage } from "@jupyterlab/services";
import { decode, encode, makeHeader, Signer, WireError, type Header, type Message } from "../protocol/wire.js";

/**
 * The client side of the Jupyter wire format: the kernel's own framing and signing
 * (kernel/protocol/wire.ts), typed with @jupyterlab/services' message types.
 */
export class WireCodec {
  private readonly signer: Signer;

  constructor(key: string, readonly session: string = randomUUID(), scheme = "hmac-sha256") {
    if (key && scheme !== "hmac-sha256") throw new Error(`unsupported signature scheme '${scheme}'`);
    this.signer = new Signer(key);
  }

  request<T extends KernelMessage.IMessage>(
    channel: T["channel"],
    msgType: T["header"]["msg_type"],
    content: T["content"],
  ): T {
    return {
      channel,
      header: makeHeader(msgType, this.session),
      parent_header: {},
      metadata: {},
      content,
      buffers: [],
    } as unknown as T;
  }

  encode(message: KernelMessage.IMessage): Buffer[] {
    const wire: Message = {
      identities: [],
      header: message.header as unknown as Header,
      parent_header: message.parent_header as Message["parent_header"],
      metadata: message.metadata as Message["metadata"],
      content: message.content as Message["content"],
      buffers: [],
    };
    return encode(wire, this.signer);
  }

  /** Returns the message, or undefined when it is malformed or its signature does not verify. */
  decode(frames: Buffer[], channel: KernelMessage.Channel): KernelMessage.IMessage | undefined {
    try {
      const { header, parent_header, metadata, content, buffers } = decode(frames, this.signer);
      return { channel, header, parent_header, metadata, content, buffers } as unknown as KernelMessage.IMessage;
    } catch (error) {
      if (error instanceof WireError) return undefined;
      throw error;
    }
  }
}

/** The msg_id of the request a message answers, or undefined for unsolicited messages. */
export function parentId(message: KernelMessage.IMessage): string | undefined {
  const parent = message.parent_header as Partial<KernelMessage.IHeader> | undefined;
  return parent?.msg_id;
}
