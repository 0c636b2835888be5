import { readFileSync } from "node:fs";
import { UserFacingError } from "../errors.js";

/** The connection file Jupyter writes for a kernel (ports, transport, signing key). */
export interface ConnectionInfo {
  transport: "tcp" | "ipc";
  ip: string;
  key: string;
  signature_scheme: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
}

export type Channel = "shell" | "iopub" | "stdin" | "control" | "hb";

const PORTS: Record<Channel, keyof ConnectionInfo> = {
  shell: "shell_port",
  iopub: "iopub_port",
  stdin: "stdin_port",
  control: "control_port",
  hb: "hb_port",
};

export function parseConnectionInfo(text: string, source = "the connection file"): ConnectionInfo {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new UserFacingError(`${source} is not valid JSON (${(error as Error).message}); pass the file Jupyter wrote for this kernel.`);
  }
  const transport = raw.transport ?? "tcp";
  if (transport !== "tcp" && transport !== "ipc") {
    throw new UserFacingError(`${source} asks for transport '${String(transport)}'; only tcp and ipc are supported.`);
  }
  const scheme = typeof raw.signature_scheme === "string" ? raw.signature_scheme : "hmac-sha256";
  if (scheme !== "hmac-sha256") {
    throw new UserFacingError(`${source} asks for signature scheme '${scheme}'; only hmac-sha256 is supported.`);
  }
  const info: ConnectionInfo = {
    transport,
    ip: typeof raw.ip === "string" ? raw.ip : "127.0.0.1",
    key: typeof raw.key === "string" ? raw.key : "",
    signature_scheme: scheme,
    shell_port: 0,
    iopub_port: 0,
    stdin_port: 0,
    control_port: 0,
    hb_port: 0,
  };
  for (const channel of Object.keys(PORTS) as Channel[]) {
    const field = PORTS[channel];
    const port = raw[field];
    if (typeof port !== "number" || !Number.isInteger(port) || port <= 0) {
      throw new UserFacingError(`${source} has no valid ${field} (got ${JSON.stringify(port)}); pass the file Jupyter wrote for this kernel.`);
    }
    (info as unknown as Record<string, unknown>)[field] = port;
  }
  return info;
}

export function readConnectionFile(path: string): ConnectionInfo {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UserFacingError(`Cannot read the connection file ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); Jupyter passes it as {connection_file}.`);
  }
  return parseConnectionInfo(text, `The connection file ${path}`);
}

/** The ZeroMQ endpoint of one channel (ipc endpoints follow jupyter_client's `<ip>-<port>` naming). */
export function endpoint(info: ConnectionInfo, channel: Channel): string {
  const port = info[PORTS[channel]] as number;
  return info.transport === "ipc" ? `ipc://${info.ip}-${port}` : `tcp://${info.ip}:${port}`;
}
