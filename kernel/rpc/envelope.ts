/**
 * The envelope shared by the kernel's two children (the Python MLX bridge over ZeroMQ, the ANE
 * worker over Node's IPC channel): a request carries an id, a method and params; the child answers
 * with zero or more `event` messages and exactly one `result` or `error` for that id.
 * `cancel {id}` asks a running job to stop at its next step boundary. See docs/bridge-protocol.md.
 */
export const PROTOCOL_VERSION = 1;

export interface Request {
  v: number;
  id: string;
  method: string;
  params: Record<string, unknown>;
}

export interface EventMessage {
  v: number;
  id: string;
  type: "event";
  event: string;
  data: Record<string, unknown>;
}

export interface ResultMessage {
  v: number;
  id: string;
  type: "result";
  data: Record<string, unknown>;
}

export interface ErrorBody {
  /** Machine-readable, e.g. "bad_data", "cancelled", "diverged", "model_not_found". */
  code: string;
  /** One sentence for a person: what was wrong and what to do. */
  message: string;
  /** Optional technical detail (a Python traceback), shown only on request. */
  detail?: string;
}

export interface ErrorMessage {
  v: number;
  id: string;
  type: "error";
  error: ErrorBody;
}

export type Reply = EventMessage | ResultMessage | ErrorMessage;

export function isReply(value: unknown): value is Reply {
  if (typeof value !== "object" || value === null) return false;
  const m = value as Partial<Reply>;
  return typeof m.id === "string" && (m.type === "event" || m.type === "result" || m.type === "error");
}
