import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { UsageError } from "../errors.js";
import { authorizeClient, authorizedClients, curveDir, loadOrCreateKeyPair } from "./curve.js";
import { killGroup, launchBridge, type RunningBridge } from "./local.js";

/**
 * `tunelab bridge --listen tcp://HOST:PORT`: serves the MLX bridge to notebooks on other
 * machines. Every connection is CURVE-authenticated: the server's key pair and the directory of
 * authorised client keys live under the CURVE directory (~/.config/tunelab/curve by default).
 */
export interface ServeOptions {
  listen: string;
  runsDir: string;
  keysDir: string;
  authorize: string[];
}

const USAGE =
  "usage: tunelab bridge --listen tcp://HOST:PORT [--runs-dir DIR] [--keys DIR] [--authorize CLIENT_PUBLIC_KEY]";

export function parseServeArgs(argv: string[]): ServeOptions {
  const options: ServeOptions = { listen: "", runsDir: resolve("runs"), keysDir: curveDir(), authorize: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v.startsWith("--")) throw new UsageError(`${name} needs a value.\n${USAGE}`);
      return v;
    };
    if (name === "--listen") options.listen = value();
    else if (name === "--runs-dir") options.runsDir = resolve(value());
    else if (name === "--keys") options.keysDir = resolve(value());
    else if (name === "--authorize") options.authorize.push(value());
    else if (name === "--help" || name === "-h") throw new UsageError(USAGE);
    else throw new UsageError(`Unknown option '${arg}'.\n${USAGE}`);
  }
  if (!/^tcp:\/\/[^:]+:\d+$/.test(options.listen)) {
    throw new UsageError(`--listen must be tcp://HOST:PORT (for example tcp://0.0.0.0:5555), got '${options.listen}'.\n${USAGE}`);
  }
  return options;
}

export interface ServeHandle {
  bridge: RunningBridge;
  /** The variables a notebook sets to reach this bridge. */
  clientEnv: Record<string, string>;
  instructions: string;
}

/** Prepares keys, starts the bridge on the endpoint and says what the client must set. */
export async function startServe(options: ServeOptions): Promise<ServeHandle> {
  const server = loadOrCreateKeyPair(join(options.keysDir, "server"));
  const clientsDir = join(options.keysDir, "clients");
  options.authorize.forEach((key) => authorizeClient(clientsDir, `client-${key.slice(0, 8).replace(/[^0-9a-zA-Z]/g, "_")}`, key));
  // Without any authorised client nobody could connect: make one pair this user can hand over.
  const client = loadOrCreateKeyPair(join(options.keysDir, "client"));
  if (authorizedClients(clientsDir).length === 0 || client.created) authorizeClient(clientsDir, "client", client.pair.publicKey);

  const bridge = await launchBridge({
    listen: options.listen,
    runsDir: options.runsDir,
    curveSecretKeyFile: join(options.keysDir, "server.key_secret"),
    curveClientsDir: clientsDir,
    parentPid: process.pid,
  });
  const [, host, port] = /^tcp:\/\/([^:]+):(\d+)$/.exec(bridge.endpoint) ?? /^tcp:\/\/([^:]+):(\d+)$/.exec(options.listen)!;
  const publicHost = host === "0.0.0.0" || host === "*" ? hostname() : host;
  const clientEnv: Record<string, string> = {
    TUNELAB_BRIDGE_URL: `tcp://${publicHost}:${port}`,
    TUNELAB_BRIDGE_SERVER_KEY: server.pair.publicKey,
    TUNELAB_BRIDGE_CLIENT_PUBLIC_KEY: client.pair.publicKey,
    TUNELAB_BRIDGE_CLIENT_SECRET_KEY: client.pair.secretKey,
  };
  const instructions = [
    `tunelab bridge: serving MLX on ${bridge.endpoint} (CURVE; runs in ${options.runsDir}).`,
    "On the notebook machine, set these before starting the kernel:",
    ...Object.entries(clientEnv).map(([k, v]) => `  export ${k}='${v}'`),
    `(Authorised client keys are in ${clientsDir}; add another with --authorize KEY.) Stop with Ctrl-C.`,
  ].join("\n");
  return { bridge, clientEnv, instructions };
}

export async function run(argv: string[]): Promise<number> {
  const options = parseServeArgs(argv);
  const handle = await startServe(options);
  console.log(handle.instructions);
  handle.bridge.child.stderr?.on("data", (chunk: Buffer) => process.stderr.write(chunk));
  // The bridge has its own process group, so the terminal's Ctrl-C is passed on by hand; SIGINT
  // lets it stop a running job at its step boundary and save it before exiting.
  const forward = (signal: NodeJS.Signals) => () => killGroup(handle.bridge.child, signal);
  process.on("SIGINT", forward("SIGINT"));
  process.on("SIGTERM", forward("SIGTERM"));
  const how = await handle.bridge.exited;
  console.log(`tunelab bridge: stopped (${how}).`);
  return how.endsWith("code 0") || how.includes("SIGTERM") || how.includes("SIGINT") ? 0 : 1;
}
