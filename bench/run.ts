/**
 * `npm run bench [-- NAME ...]`: runs the benchmarks, each comparing tunelab with a peer in the
 * same run, and rewrites BENCHMARKS.md with the figures and the machine they were taken on.
 */
import { cpus, totalmem, platform, arch, release } from "node:os";
import { writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../kernel/paths.js";
import { bridgeBlas, machineLine } from "./blas-report.js";

interface Bench {
  title: string;
  reproduce: string;
  load(): Promise<() => Promise<{ markdown: string }>>;
}

const BENCHES: Record<string, Bench> = {
  kernel: {
    title: "Kernel: trivial cell round trip, start-up, heartbeat (tunelab vs tslab vs ipykernel)",
    reproduce: "npm run bench -- kernel",
    load: async () => (await import("./kernel/index.js")).runKernelBench,
  },
  tune: {
    title: "%tune through the kernel vs a plain mlx-lm script; adapter switch; bridge round trip",
    reproduce: "npm run bench -- tune",
    load: async () => (await import("./tune/index.js")).runTuneBench,
  },
  "fast-tune": {
    title: "The identity run on CPU: tunelab's fast path vs mlx-lm (stock and OpenBLAS) vs PyTorch + PEFT",
    reproduce: "npm run bench -- fast-tune",
    load: async () => (await import("./fast-tune/index.js")).runFastTuneBench,
  },
  generate: {
    title: "Generation on the CPU: llama.cpp called directly vs tunelab's engine (direct and through the bridge) vs mlx-lm; adapters switched per request",
    reproduce: "npm run bench -- generate",
    load: async () => (await import("./generate/index.js")).runGenerateBench,
  },
  runner: {
    title: "`tunelab run` vs nbclient on the same notebook and kernel",
    reproduce: "npm run bench -- runner",
    load: async () => (await import("./runner/index.js")).runRunnerBench,
  },
  ane: {
    title: "ANE conv-stack benchmark: CPU backend vs a plain sgemm on the same machine",
    reproduce: "npm run bench -- ane",
    load: async () => (await import("./ane/index.js")).runAneBench,
  },
};

async function machine(): Promise<string> {
  const cpu = cpus();
  const bridge = await bridgeBlas().then(machineLine, (error: Error) => `bridge not checked (${error.message.slice(0, 200)})`);
  return `${cpu.length} x ${cpu[0]?.model ?? "unknown CPU"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${platform()}-${arch()} ${release()}, Node ${process.version}; as the bridge sees it: ${bridge}`;
}

async function main(): Promise<void> {
  const requested = process.argv.slice(2).filter((a) => !a.startsWith("-"));
  const names = requested.length > 0 ? requested : Object.keys(BENCHES);
  const unknown = names.filter((n) => !(n in BENCHES));
  if (unknown.length > 0) {
    console.error(`unknown benchmark(s): ${unknown.join(", ")}; known: ${Object.keys(BENCHES).join(", ")}`);
    process.exitCode = 2;
    return;
  }
  const sections: string[] = [];
  let failed = false;
  for (const name of names) {
    const bench = BENCHES[name]!;
    console.log(`bench: ${name}...`);
    const started = Date.now();
    try {
      const { markdown } = await (await bench.load())();
      sections.push(`## ${bench.title}\n\nReproduce: \`${bench.reproduce}\` (${((Date.now() - started) / 1000).toFixed(0)} s this run)\n\n${markdown.trim()}\n`);
      console.log(markdown);
    } catch (error) {
      failed = true;
      sections.push(`## ${bench.title}\n\nReproduce: \`${bench.reproduce}\`\n\nThis run failed: ${(error as Error).message}\n`);
      console.error(`bench ${name} failed: ${(error as Error).stack ?? error}`);
    }
  }
  const text = [
    "# Benchmarks",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${await machine()}.`,
    "Every table compares tunelab with a peer measured in the same run; these machines are noisy, so compare within a table, not across runs.",
    "",
    ...sections,
  ].join("\n");
  // Only a full run rewrites the whole file; a partial run writes BENCHMARKS.partial.md.
  const target = join(PACKAGE_ROOT, requested.length > 0 ? "BENCHMARKS.partial.md" : "BENCHMARKS.md");
  writeFileSync(`${target}.tmp`, text);
  renameSync(`${target}.tmp`, target);
  console.log(`wrote ${target}`);
  if (failed) process.exitCode = 1;
}

await main();
