import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import type { KernelMessage } from "@jupyterlab/services";

const DELIMITER = "<IDS|MSG>";

/**
 * The Jupyter wire format on the client side: four JSON frames signed with HMAC-SHA256 over the
 * connection file's key. An empty key means the kernel does not sign, and neither do we.
 */
export class WireCodec {
  private readonly key: Buffer;

  constructor(key: string, readonly session: string = randomUUID(), private readonly scheme = "hmac-sha256") {
    if (key && scheme !== "hmac-sha256") throw new Error(`unsupported signature scheme '${scheme}'`);
    this.key = Buffer.from(key, "utf8");
  }

  request<T extends KernelMessage.IMessage>(
    channel: T["channel"],
    msgType: T["header"]["msg_type"],
    content: T["content"],
  ): T {
    return {
      channel,
      header: {
        msg_id: randomUUID(),
        msg_type: msgType,
        session: this.session,
        username: "tunelab",
        date: new Date().toISOString(),
        version: "5.3",
      },
      parent_header: {},
      metadata: {},
      content,
      buffers: [],
    } as unknown as T;
  }

  encode(message: KernelMessage.IMessage): Buffer[] {
    const parts = [message.header, message.parent_header, message.metadata, message.content].map((p) => Buffer.from(JSON.stringify(p), "utf8"));
    return [Buffer.from(DELIMITER), Buffer.from(this.sign(parts)), ...parts];
  }

  /** Returns the message, or undefined when it is malformed or its signature does not verify. */
  decode(frames: Buffer[], channel: KernelMessage.Channel): KernelMessage.IMessage | undefined {
    const at = frames.findIndex((f) => f.length === DELIMITER.length && f.toString() === DELIMITER);
    if (at < 0 || frames.length < at + 6) return undefined;
    const signature = frames[at + 1];
    const parts = frames.slice(at + 2, at + 6);
    if (this.key.length > 0) {
      const expected = Buffer.from(this.sign(parts));
      if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return undefined;
    }
    try {
      const [header, parent_header, metadata, content] = parts.map((p) => JSON.parse(p.toString("utf8")) as unknown);
      return {
        channel,
        header,
        parent_header,
        metadata,
        content,
        buffers: frames.slice(at + 6),
      } as unknown as KernelMessage.IMessage;
    } catch {
      return undefined;
    }
  }

  private sign(parts: Buffer[]): string {
    if (this.key.length === 0) return "";
    const hmac = createHmac("sha256", this.key);
    for (const part of parts) hmac.update(part);
    return hmac.digest("hex");
  }
}

/** The msg_id of the request a message answers, or undefined for unsolicited messages. */
export function parentId(message: KernelMessage.IMessage): string | undefined {
  const parent = message.parent_header as Partial<KernelMessage.IHeader> | undefined;
  return parent?.msg_id;
}
