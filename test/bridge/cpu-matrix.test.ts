import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BridgeClient } from "../../kernel/bridge/client.js";
import { ChildGoneError } from "../../kernel/rpc/client.js";
import type { BlasInfo } from "../../kernel/bridge/types.js";
import { probeBridge } from "../../kernel/doctor.js";
import { NATIVE_ADDON } from "../../kernel/paths.js";
import { bridgeInstalled, tempDir, tinyModelDir, tuneParams } from "./fixtures.js";


/**
 * The same bridge on other x86-64 CPUs than the one at hand. QEMU's user-mode emulator runs the
 * bridge's Python (and everything it loads) as a Haswell (AVX2 + FMA, no AVX-512) or a Nehalem
 * (SSE4.2, no AVX) would, whatever the host has: a native library that assumes more than the CPU
 * offers dies there with SIGILL, which an AVX-512 host would otherwise hide. `setup --test`
 * installs qemu-user on Debian.
 */

const QEMU = "qemu-x86_64";
const onX64Linux = process.platform === "linux" && process.arch === "x64";
const qemuPresent = onX64Linux && spawnSync(QEMU, ["--version"]).status === 0;

interface Emulated {
  cpu: string;
  /** The instruction-set level the bridge should see. */
  level: string;
  /** The host kernels' path on that CPU. */
  kernels: string;
}

const EMULATED: Emulated[] = [
  { cpu: "Haswell", level: "x86-64-v3", kernels: "avx2" },
  { cpu: "Nehalem", level: "x86-64-v2", kernels: "portable" },
];

/** QEMU warns about host CPUID bits its translator lacks (TSX, PCID...); none matter here. */
const wrapperFor = (cpu: string) => `${QEMU} -cpu ${cpu}`;

async function fewSteps(client: BridgeClient, model: string, name: string): Promise<{ losses: number[]; text: string; blas: BlasInfo }> {
  const losses: number[] = [];
  const result = await client.tune(tuneParams(model, { name, iters: 3, layers: 2 }), {
    onEvent: (e) => e.event === "progress" && losses.push(e.data.loss),
  });
  expect(result.status).toBe("completed");
  const generated = await client.generate({ prompt: "Who are you?", adapter: name, max_tokens: 6, temp: 0, top_p: 1, seed: 0, system: null, model });
  expect(generated.tokens).toBeGreaterThan(0);
  return { losses, text: generated.text, blas: result.blas };
}

describe.skipIf(!bridgeInstalled || !onX64Linux)("the bridge on emulated x86-64 CPUs", () => {
  let model: string;
  let cache: string;
  let native: { losses: number[]; text: string; blas: BlasInfo };

  beforeAll(async () => {
    expect(qemuPresent, `${QEMU} is missing; run \`node bin/tunelab.js setup --test\` (Debian package qemu-user)`).toBe(true);
    model = tinyModelDir();
    // One cache for every CPU: each CPU gets its own BLAS check, and the host kernels built
    // here natively (no CPU-specific flags) must be right on the emulated CPUs too.
    cache = tempDir("tunelab-cpu-matrix-");
    const client = new BridgeClient({ runsDir: tempDir(), env: { TUNELAB_CACHE: cache } });
    try {
      native = await fewSteps(client, model, "native");
    } finally {
      await client.dispose();
    }
  }, 600_000);

  for (const target of EMULATED) {
    describe(target.cpu, () => {
      let client: BridgeClient;
      afterAll(async () => {
        await client?.dispose();
      });

      it(
        "checks its BLAS there, trains a few LoRA steps with the native run's losses and generates",
        async () => {
          client = new BridgeClient({ runsDir: tempDir(), env: { TUNELAB_CACHE: cache, TUNELAB_BRIDGE_WRAPPER: wrapperFor(target.cpu) } });
          const status = await client.status();
          expect(status.blas.cpu?.level).toBe(target.level);
          const chosen = status.blas.candidates?.find((c) => c.chosen);
          expect(chosen?.ok, JSON.stringify(status.blas.candidates)).toBe(true);
          // An AVX-512-only build is never chosen on a CPU without AVX-512: its check fails first.
          const cmeel = status.blas.candidates?.find((c) => c.name === "cmeel-openblas");
          if (cmeel?.available) {
            expect(cmeel.ok).toBe(false);
            expect(cmeel.reason).toMatch(/SIGILL|illegal instruction/i);
          }

          const emulated = await fewSteps(client, model, `on-${target.cpu}`);
          expect(emulated.losses).toHaveLength(native.losses.length);
          emulated.losses.forEach((loss, i) => expect(Math.abs(loss - native.losses[i]!)).toBeLessThan(1e-3 * Math.abs(native.losses[i]!) + 1e-5));
          expect(emulated.blas.name).toBe(status.blas.name);
        },
        900_000,
      );

      it(
        "tunelab doctor reports the BLAS it chose and the host kernels' path",
        async () => {
          const { report, error } = await probeBridge(undefined, { TUNELAB_CACHE: cache, TUNELAB_BRIDGE_WRAPPER: wrapperFor(target.cpu) });
          expect(report, error ?? "").not.toBeNull();
          expect(report!.blas.cpu?.level).toBe(target.level);
          expect(report!.blas.candidates?.some((c) => c.chosen && c.ok)).toBe(true);
          expect(report!.host_kernels?.simd).toBe(target.kernels);
        },
        600_000,
      );
    });
  }
});

/**
 * A library that passed its check but faults later anyway (here: cmeel's AVX-512-only OpenBLAS,
 * let through by a doctored cache entry on a Haswell). The cell must say which library it was and
 * what to do, not "killed by SIGILL".
 */
describe.skipIf(!bridgeInstalled || !onX64Linux)("a native fault in the bridge", () => {
  it("names the library that faulted and how to rule it out", async () => {
    expect(qemuPresent, `${QEMU} is missing; run \`node bin/tunelab.js setup --test\``).toBe(true);
    const cache = tempDir("tunelab-fault-");
    const env = { TUNELAB_CACHE: cache, TUNELAB_BRIDGE_WRAPPER: wrapperFor("Haswell") };
    const { report } = await probeBridge(undefined, env);
    const cmeel = report?.blas.candidates?.find((c) => c.name === "cmeel-openblas");
    expect(cmeel?.available, "cmeel-openblas is part of the bridge's lock file").toBe(true);
    const checksFile = join(cache, "blas-checks.json");
    const checks = JSON.parse(readFileSync(checksFile, "utf8")) as Record<string, { results: Array<{ name: string; ok: boolean; reason: string; measured: Record<string, unknown> }> }>;
    for (const entry of Object.values(checks)) {
      for (const result of entry.results) if (result.name === "cmeel-openblas") Object.assign(result, { ok: true, reason: "", measured: { gflops: 1e6, size: 1024 } });
    }
    writeFileSync(checksFile, JSON.stringify(checks));

    const client = new BridgeClient({ runsDir: tempDir(), env });
    try {
      expect((await client.status()).blas.library).toBe("cmeel-openblas");
      const error = await client.generate({ prompt: "Who are you?", adapter: null, max_tokens: 4, temp: 0, top_p: 1, seed: 0, system: null, model: tinyModelDir() }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ChildGoneError);
      const message = (error as Error).message;
      expect(message).toMatch(/illegal instruction \(SIGILL\)/);
      expect(message).toMatch(/in its BLAS, \S*cmeel\.prefix\S*libopenblas\.so\.0/);
      expect(message).toMatch(/tunelab doctor --recheck.*TUNELAB_BLAS=reference/);
      expect(message).not.toMatch(/killed by SIGILL/);
    } finally {
      await client.dispose();
    }
  }, 600_000);
});

/** The Node addon's cpu backend, loaded and checked against float64 on each emulated CPU. */
describe.skipIf(!onX64Linux || !existsSync(NATIVE_ADDON))("the native addon on emulated x86-64 CPUs", () => {
  const script = `
    const addon = require(${JSON.stringify(NATIVE_ADDON)});
    (async () => {
      const C = 48, S = 32;
      const w = Float32Array.from({ length: C * C }, (_, i) => Math.sin(i) * 0.1);
      const x = Float32Array.from({ length: C * S }, (_, i) => Math.cos(i));
      const graph = await addon.compile("cpu", { channels: [C, C, C], spatial: S, weights: [w, w] });
      const y = new Float32Array(C * S);
      await addon.evaluate(graph, x, y);
      let h = Array.from(x);
      for (let l = 0; l < 2; l++) {
        const o = new Array(C * S).fill(0);
        for (let r = 0; r < C; r++) for (let k = 0; k < C; k++) for (let s = 0; s < S; s++) o[r * S + s] += w[r * C + k] * h[k * S + s];
        h = o;
      }
      const err = Math.max(...h.map((v, i) => Math.abs(v - y[i])));
      console.log(JSON.stringify({ err, blas: addon.blas() }));
    })();
  `;

  for (const target of EMULATED) {
    it(`computes the cpu backend's stack on ${target.cpu}`, () => {
      expect(qemuPresent, `${QEMU} is missing; run \`node bin/tunelab.js setup --test\``).toBe(true);
      const file = join(tempDir("tunelab-addon-cpu-"), "check.cjs");
      writeFileSync(file, script);
      const out = execFileSync(QEMU, ["-cpu", target.cpu, process.execPath, file], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 });
      const result = JSON.parse(out.trim().split("\n").pop()!) as { err: number; blas: string };
      expect(result.err).toBeLessThan(1e-4);
      expect(result.blas).toMatch(new RegExp(target.cpu, "i"));
    });
  }
});
