import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { curveKeyPair } from "zeromq";
import { BridgeClient } from "../../kernel/bridge/client.js";
import { clientKeys, readCertificate } from "../../kernel/bridge/curve.js";
import { killGroup } from "../../kernel/bridge/local.js";
import { parseServeArgs, startServe, type ServeHandle } from "../../kernel/bridge/serve-cli.js";
import { UsageError, UserFacingError } from "../../kernel/errors.js";
import { bridgeInstalled, tempDir, tinyModelDir, tuneParams } from "./fixtures.js";

describe("tunelab bridge arguments and keys", () => {
  it("requires a tcp endpoint", () => {
    expect(() => parseServeArgs([])).toThrow(UsageError);
    expect(() => parseServeArgs(["--listen", "ipc:///tmp/x"])).toThrow(/--listen must be tcp:\/\/HOST:PORT/);
    expect(() => parseServeArgs(["--listen", "tcp://0.0.0.0:5555", "--bogus"])).toThrow(/Unknown option '--bogus'/);
    expect(parseServeArgs(["--listen=tcp://0.0.0.0:5555"]).listen).toBe("tcp://0.0.0.0:5555");
  });

  it("refuses a malformed server key with a sentence", () => {
    expect(() => clientKeys({ TUNELAB_BRIDGE_SERVER_KEY: "short" })).toThrow(/40-character public key/);
    expect(clientKeys({})).toBeNull();
  });

  it("does not connect to a non-loopback bridge without CURVE keys", async () => {
    const client = new BridgeClient({ remoteUrl: "tcp://10.1.2.3:5555", env: {} });
    await expect(client.ping()).rejects.toThrow(/not loopback: set TUNELAB_BRIDGE_SERVER_KEY/);
    await client.dispose();
  });
});

describe.skipIf(!bridgeInstalled)("a remote bridge over CURVE on tcp://127.0.0.1", () => {
  let handle: ServeHandle;
  let keysDir: string;

  beforeAll(async () => {
    keysDir = tempDir("tunelab-curve-");
    handle = await startServe({ listen: "tcp://127.0.0.1:0", runsDir: tempDir(), keysDir, authorize: [] });
  });

  afterAll(async () => {
    if (handle) {
      killGroup(handle.bridge.child, "SIGKILL");
      await handle.bridge.exited;
    }
  });

  it("writes the key pairs as private certificate files and prints what the client sets", () => {
    const secret = join(keysDir, "server.key_secret");
    expect(statSync(secret).mode & 0o077).toBe(0);
    expect(readCertificate(secret).secretKey).toHaveLength(40);
    expect(existsSync(join(keysDir, "clients", "client.key"))).toBe(true);
    expect(readFileSync(join(keysDir, "clients", "client.key"), "utf8")).not.toMatch(/secret-key/);
    expect(handle.clientEnv.TUNELAB_BRIDGE_URL).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(handle.clientEnv.TUNELAB_BRIDGE_URL).not.toMatch(/:0$/);
    expect(handle.instructions).toContain(`export TUNELAB_BRIDGE_SERVER_KEY='${handle.clientEnv.TUNELAB_BRIDGE_SERVER_KEY}'`);
  });

  it("answers a client holding the printed keys", async () => {
    const env = { ...handle.clientEnv };
    const client = new BridgeClient({ remoteUrl: env.TUNELAB_BRIDGE_URL, env, connectTimeoutMs: 30_000 });
    const status = await client.status();
    expect(status.protocol).toBe(1);
    expect(status.pid).toBe(handle.bridge.child.pid);
    await client.dispose();
    // A remote bridge outlives the notebook's client.
    const again = new BridgeClient({ remoteUrl: env.TUNELAB_BRIDGE_URL, env });
    expect((await again.ping()).pong).toBe(true);
    await again.dispose();
  });

  it("trains data-parallel in a group the remote bridge starts (notebook here, the group there)", async () => {
    const env = { ...handle.clientEnv };
    const client = new BridgeClient({ remoteUrl: env.TUNELAB_BRIDGE_URL, env, connectTimeoutMs: 30_000 });
    const steps: number[] = [];
    const result = await client.tune(tuneParams(tinyModelDir(), { name: "remote-pair", iters: 4, batch_size: 2, layers: 2, processes: 2 }), {
      onEvent: (e) => e.event === "progress" && steps.push(e.data.step),
    });
    expect(result.status).toBe("completed");
    expect(steps).toEqual([1, 2, 3, 4]);
    expect(result.processes).toBe(2);
    await client.dispose();
  });

  it("gives no answer to a client with the wrong server key, and says so", async () => {
    const env = { ...handle.clientEnv, TUNELAB_BRIDGE_SERVER_KEY: curveKeyPair().publicKey };
    const client = new BridgeClient({ remoteUrl: env.TUNELAB_BRIDGE_URL, env, connectTimeoutMs: 3000 });
    const error = await client.ping().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserFacingError);
    expect((error as Error).message).toMatch(/did not answer within 3 s|refused this client's CURVE keys/);
    expect((error as Error).message).toMatch(/TUNELAB_BRIDGE_SERVER_KEY|CURVE keys/);
    await client.dispose();
  });

  it("refuses a client whose key is not authorised", async () => {
    const stranger = curveKeyPair();
    const env = { ...handle.clientEnv, TUNELAB_BRIDGE_CLIENT_PUBLIC_KEY: stranger.publicKey, TUNELAB_BRIDGE_CLIENT_SECRET_KEY: stranger.secretKey };
    const client = new BridgeClient({ remoteUrl: env.TUNELAB_BRIDGE_URL, env, connectTimeoutMs: 3000 });
    const error = await client.ping().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserFacingError);
    expect((error as Error).message).toMatch(/did not answer|refused this client's CURVE keys/);
    await client.dispose();
  });
});
