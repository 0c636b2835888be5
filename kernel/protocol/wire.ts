import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

/**
 * Jupyter messages and their ZeroMQ framing:
 * `[identities..., "<IDS|MSG>", hmac_hex, header, parent_header, metadata, content, buffers...]`.
 */
export const PROTOCOL_VERSION = "5.3";
const DELIMITER = Buffer.from("<IDS|MSG>");

export interface Header {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
  [extra: string]: unknown;
}

export type JsonObject = Record<string, unknown>;

export interface Message<C extends JsonObject = JsonObject> {
  /** ROUTER identities of the sender; replies go back to them. */
  identities: Buffer[];
  header: Header;
  /** The request this message answers; `{}` when there is none. */
  parent_header: Header | Record<string, never>;
  metadata: JsonObject;
  content: C;
  buffers: Buffer[];
}

export class Signer {
  constructor(private readonly key: string) {}

  get enabled(): boolean {
    return this.key.length > 0;
  }

  sign(parts: Buffer[]): string {
    if (!this.enabled) return "";
    const hmac = createHmac("sha256", this.key);
    for (const part of parts) hmac.update(part);
    return hmac.digest("hex");
  }

  /** Constant-time check, so that a forger learns nothing from how long a rejection takes. */
  verify(signature: string, parts: Buffer[]): boolean {
    if (!this.enabled) return true;
    const expected = Buffer.from(this.sign(parts), "utf8");
    const given = Buffer.from(signature, "utf8");
    if (given.length !== expected.length) {
      timingSafeEqual(expected, expected);
      return false;
    }
    return timingSafeEqual(expected, given);
  }
}

export class WireError extends Error {}

/** Frames -> message; throws WireError for anything malformed or not signed with our key. */
export function decode(frames: Buffer[], signer: Signer): Message {
  const split = frames.findIndex((f) => f.equals(DELIMITER));
  if (split < 0) throw new WireError("no <IDS|MSG> delimiter");
  if (frames.length < split + 6) throw new WireError(`only ${frames.length - split - 1} frames after the delimiter`);
  const signature = frames[split + 1].toString("ascii");
  const parts = frames.slice(split + 2, split + 6);
  if (!signer.verify(signature, parts)) throw new WireError(signature ? "bad signature" : "missing signature");
  let json: unknown[];
  try {
    json = parts.map((p) => JSON.parse(p.toString("utf8")) as unknown);
  } catch (error) {
    throw new WireError(`invalid JSON (${(error as Error).message})`);
  }
  const [header, parent, metadata, content] = json;
  if (!isObject(header) || typeof header.msg_type !== "string" || typeof header.msg_id !== "string") {
    throw new WireError("header without msg_type or msg_id");
  }
  return {
    identities: frames.slice(0, split),
    header: header as Header,
    parent_header: (isObject(parent) ? parent : {}) as Header,
    metadata: isObject(metadata) ? metadata : {},
    content: isObject(content) ? content : {},
    buffers: frames.slice(split + 6),
  };
}

export function encode(message: Message, signer: Signer): Buffer[] {
  const parts = [message.header, message.parent_header, message.metadata, message.content].map((p) => Buffer.from(JSON.stringify(p), "utf8"));
  return [...message.identities, DELIMITER, Buffer.from(signer.sign(parts), "ascii"), ...parts, ...message.buffers];
}

export function makeHeader(msgType: string, session: string, username = "tunelab"): Header {
  return { msg_id: randomUUID(), session, username, date: new Date().toISOString(), msg_type: msgType, version: PROTOCOL_VERSION };
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
