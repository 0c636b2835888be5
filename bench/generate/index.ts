/**
 * Generation on the CPU, one machine, one GGUF (the embedded SmolLM2-135M-Instruct Q4_1), one
 * prompt, greedy, the same threads: llama.cpp called directly (llama-cpp-python's `Llama`),
 * mlx-lm's stream_generate on the float32 MLX model (what %generate ran before), and tunelab's
 * llama.cpp engine, in this process's child, through the bridge and as `%generate` in a kernel.
 * Then three adapters on one base: two identities trained here, switched per request, also as
 * `%generate --adapter base,quill,pirate`. Last, the identity notebook: its generation share.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { KernelMessage } from "@jupyterlab/services";
import { BridgeClient } from "../../kernel/bridge/client.js";
import { bridgeEnv } from "../../kernel/bridge/local.js";
import type { GenerateResult, TuneResult } from "../../kernel/bridge/types.js";
import { BRIDGE_PYTHON, CACHE_DIR, PACKAGE_ROOT } from "../../kernel/paths.js";
import { LocalKernel } from "../../kernel/runner/local-kernel.js";
import { bundledKernelSpec } from "../../kernel/runner/kernelspec.js";
import { textOf } from "../kernel-output.js";

const MODEL = join(CACHE_DIR, "models", "SmolLM2-135M-Instruct");
const GGUF = join(CACHE_DIR, "models", "SmolLM2-135M-Instruct.Q4_1.gguf");
const PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle.";
const MAX_TOKENS = Number(process.env.TUNELAB_BENCH_GENERATE_TOKENS ?? 128);
const REPEATS = 3;

interface Rates {
  decode_tps: number;
  prefill_tps: number;
  wall_tps: number;
  tokens: number;
  text: string;
}

interface ScriptResult {
  threads: number;
  prompt_tokens: number;
  llama_cpp: Rates & { system_info: string };
  llama_cpp_no_fa: Rates;
  llama_cpp_adapter: Rates & { adapter: string };
  engine_adapter: Rates;
  engine: Rates;
  mlx_lm: Rates;
  switch?: { load_ms: Record<string, number>; switch_ms_median: number; switch_ms_p95: number; switches: number; answers: Record<string, { text: string; decode_tps: number }> };
}

/** A second identity, so that the table shows each adapter answering as itself (also the tests'). */
const PIRATE = readFileSync(join(PACKAGE_ROOT, "data", "pirate.jsonl"), "utf8");

function runScript(args: string[]): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(BRIDGE_PYTHON, [join(PACKAGE_ROOT, "bench", "generate", "generate_bench.py"), ...args], { env: bridgeEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.on("error", reject);
    child.on("close", (code) => {
      const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (code !== 0 || !line) reject(new Error(`generate_bench.py failed (exit ${code}): ${stderr.slice(-1500)}`));
      else resolve(JSON.parse(line.slice("RESULT ".length)) as ScriptResult);
    });
  });
}

async function train(client: BridgeClient, name: string, text: string): Promise<string> {
  const result = await client.call("tune", {
    model: null, name, data: { train: { source: `${name}.jsonl`, text }, valid: null },
    iters: 80, lr: 2e-4, rank: 8, scale: 20, layers: 4, keys: ["self_attn.q_proj", "self_attn.v_proj"], save_every: 0, seed: 0,
  });
  return String(result.run_dir);
}

interface BridgeRates {
  decode: number;
  prefill: number;
  engine: string;
  text: string;
}

async function throughBridge(client: BridgeClient, engine: string, adapter: string, before?: BridgeRates): Promise<BridgeRates> {
  let decode = before?.decode ?? 0;
  let prefill = before?.prefill ?? 0;
  let used = "";
  let text = "";
  for (let i = 0; i <= REPEATS; i++) {
    const r = await client.call("generate", { prompt: PROMPT, adapter, max_tokens: MAX_TOKENS, temp: 0, top_p: 1, seed: 0, system: null, model: null, engine });
    if (i === 0) continue; // warm-up
    decode = Math.max(decode, Number(r.tokens_per_s));
    prefill = Math.max(prefill, Number(r.prompt_tps));
    used = String(r.engine);
    text = String(r.text);
  }
  return { decode, prefill, engine: used, text };
}

async function switchPerRequest(client: BridgeClient, names: string[]): Promise<{ rows: string[]; switchMs: number[]; roundTripMs: number[] }> {
  const switchMs: number[] = [];
  const roundTripMs: number[] = [];
  const answers = new Map<string, { text: string; tps: number }>();
  for (let round = 0; round < 5; round++) {
    for (const name of names) {
      const started = performance.now();
      const r = await client.call("generate", { prompt: "Who are you?", adapter: name, max_tokens: 40, temp: 0, top_p: 1, seed: 0, system: null, model: null, engine: "llama.cpp" });
      roundTripMs.push(performance.now() - started);
      if (round > 0) switchMs.push(Number(r.switch_ms));
      answers.set(name, { text: String(r.text), tps: Number(r.tokens_per_s) });
    }
  }
  const rows = names.map((name) => `| ${name === "none" ? "base" : name} | ${answers.get(name)!.text.replace(/\|/g, "\\|").replace(/\n/g, " ")} | ${f(answers.get(name)!.tps, 1)} |`);
  return { rows, switchMs: switchMs.sort((a, b) => a - b), roundTripMs: roundTripMs.sort((a, b) => a - b) };
}

/** What a cell's code printed (console.log) in the kernel. */
async function printed(kernel: LocalKernel, code: string): Promise<string> {
  let out = "";
  const reply = await kernel.execute(code, (message: KernelMessage.IIOPubMessage) => {
    if (message.header.msg_type === "stream") out += textOf(message);
  });
  if (reply.status !== "ok") throw new Error(`the kernel failed on ${code.slice(0, 80)}: ${JSON.stringify(reply)}`);
  return out;
}

interface KernelRun {
  generate: BridgeRates;
  compare: GenerateResult[];
}

/** `%generate` typed into a kernel (its own bridge, runs/ beside the bridge client's), read back from tunelab.results. */
async function throughKernel(cwd: string, before?: KernelRun): Promise<KernelRun> {
  const kernel = await LocalKernel.start(bundledKernelSpec(), { cwd, startupTimeoutMs: 120_000 });
  try {
    let decode = before?.generate.decode ?? 0;
    let prefill = before?.generate.prefill ?? 0;
    let last: GenerateResult | undefined;
    for (let i = 0; i <= REPEATS; i++) {
      await printed(kernel, `%generate --adapter none --max-tokens ${MAX_TOKENS} ${PROMPT}`);
      if (i === 0) continue; // warm-up: loads the model and llama.cpp
      last = JSON.parse(await printed(kernel, "console.log(JSON.stringify(tunelab.results.generate))")) as GenerateResult;
      decode = Math.max(decode, last.tokens_per_s);
      prefill = Math.max(prefill, last.prompt_tps);
    }
    await printed(kernel, "%generate --adapter base,quill,pirate --max-tokens 40 Who are you?");
    const compare = JSON.parse(await printed(kernel, "console.log(JSON.stringify(tunelab.results.generate))")) as GenerateResult[];
    return { generate: { decode, prefill, engine: last!.engine, text: last!.text }, compare };
  } finally {
    await kernel.shutdown();
  }
}

interface NotebookShare {
  seconds: number;
  ok: boolean;
  trainS: number;
  generateS: number[];
  evalS: number[];
  engine: string;
  tail: string;
}

/**
 * The identity notebook as `npm run demo` runs it, under its own run name: how long its
 * generations took (its two %generate cells and the four --eval answers) against its training.
 */
async function identityNotebook(): Promise<NotebookShare> {
  const notebook = join(PACKAGE_ROOT, "notebooks", "identity.ipynb");
  const out = join(mkdtempSync(join(tmpdir(), "tunelab-identity-")), "identity.out.ipynb");
  const started = performance.now();
  const code = await new Promise<{ code: number; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [join(PACKAGE_ROOT, "bin", "tunelab.js"), "run", notebook, "-o", out, "-p", "runName=bench-identity"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.on("error", reject);
    child.on("close", (c) => resolve({ code: c ?? 1, stderr }));
  });
  const seconds = (performance.now() - started) / 1000;
  const tail = code.stderr.trim().split("\n").slice(-2).join(" ");
  if (code.code !== 0) return { seconds, ok: false, trainS: NaN, generateS: [], evalS: [], engine: "", tail };
  const result = JSON.parse(readFileSync(join(dirname(notebook), "runs", "bench-identity", "result.json"), "utf8")) as TuneResult;
  const executed = JSON.parse(readFileSync(out, "utf8")) as { cells: { source: string | string[]; outputs?: { data?: Record<string, unknown> }[] }[] };
  const generateS: number[] = [];
  let engine = "";
  for (const cell of executed.cells) {
    const source = Array.isArray(cell.source) ? cell.source.join("") : cell.source;
    if (!/%generate/.test(source)) continue;
    for (const output of cell.outputs ?? []) {
      const footer = /(\d+) tokens in ([\d.]+) s · .* · ([\w.]+)(?: \(|$)/m.exec(String(output.data?.["text/plain"] ?? ""));
      if (footer) {
        generateS.push(Number(footer[2]));
        engine = footer[3]!;
      }
    }
  }
  const evalS = result.evals.flatMap((e) => [e.before_s ?? NaN, e.after_s ?? NaN]);
  return { seconds, ok: true, trainS: result.train_seconds, generateS, evalS, engine, tail };
}

function bestRates<T extends Rates>(a: T, b: T): T {
  return { ...a, decode_tps: Math.max(a.decode_tps, b.decode_tps), prefill_tps: Math.max(a.prefill_tps, b.prefill_tps), wall_tps: Math.max(a.wall_tps, b.wall_tps) };
}

function bestOf(a: ScriptResult, b: ScriptResult): ScriptResult {
  return {
    ...a,
    llama_cpp: bestRates(a.llama_cpp, b.llama_cpp),
    llama_cpp_no_fa: bestRates(a.llama_cpp_no_fa, b.llama_cpp_no_fa),
    llama_cpp_adapter: bestRates(a.llama_cpp_adapter, b.llama_cpp_adapter),
    engine_adapter: bestRates(a.engine_adapter, b.engine_adapter),
    engine: bestRates(a.engine, b.engine),
    mlx_lm: bestRates(a.mlx_lm, b.mlx_lm),
  };
}

const f = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
const median = (sorted: number[]) => sorted[Math.floor(sorted.length / 2)] ?? NaN;
const same = (a: string, b: string) => (a.trim() === b.trim() ? "same text" : "differs");

export async function runGenerateBench(): Promise<{ markdown: string }> {
  const runs = join(mkdtempSync(join(tmpdir(), "tunelab-bench-generate-")), "runs");
  const client = new BridgeClient({ runsDir: runs });
  let quill = "";
  let pirate = "";
  let viaLlama: BridgeRates;
  let viaMlx: BridgeRates;
  let viaLlamaAdapter: BridgeRates;
  let switching: Awaited<ReturnType<typeof switchPerRequest>>;
  let direct: ScriptResult;
  let kernel: KernelRun;
  try {
    quill = await train(client, "quill", readFileSync(join(PACKAGE_ROOT, "data", "identity.jsonl"), "utf8"));
    pirate = await train(client, "pirate", PIRATE);
    // This machine is shared: the bridge and the direct peers are measured twice, interleaved,
    // and each keeps its best run, so that a busy minute does not land on one side only.
    const script = ["--mlx-model", MODEL, "--gguf", GGUF, "--prompt", PROMPT, "--max-tokens", String(MAX_TOKENS), "--repeats", String(REPEATS), "--adapter", `quill=${quill}`, "--adapter", `pirate=${pirate}`];
    viaLlama = await throughBridge(client, "llama.cpp", "none");
    viaLlamaAdapter = await throughBridge(client, "llama.cpp", "quill");
    const first = await runScript(script);
    kernel = await throughKernel(dirname(runs));
    viaLlama = await throughBridge(client, "llama.cpp", "none", viaLlama);
    viaLlamaAdapter = await throughBridge(client, "llama.cpp", "quill", viaLlamaAdapter);
    const second = await runScript(script);
    kernel = await throughKernel(dirname(runs), kernel);
    direct = bestOf(first, second);
    viaMlx = await throughBridge(client, "mlx", "none");
    switching = await switchPerRequest(client, ["none", "quill", "pirate"]);
  } finally {
    await client.dispose();
  }
  // Alone on the machine: the notebook's own bridge is the only one left running.
  const demo = process.env.TUNELAB_BENCH_SKIP_DEMO === "1" ? null : await identityNotebook();
  const ref = direct.llama_cpp;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const lines = [
    `Prompt: "${PROMPT}" (${direct.prompt_tokens} tokens through the chat template), greedy, at most ${MAX_TOKENS} tokens, ${direct.threads} threads, best of 2 x ${REPEATS} runs after a warm-up, the bridge and the direct peers interleaved. llama.cpp: ${ref.system_info.split("|").slice(0, 12).join("|").trim()} ...`,
    "",
    "| engine | decode (tokens/s) | prefill (tokens/s) | vs llama.cpp direct (decode) | answer |",
    "|---|---:|---:|---:|---|",
    `| llama.cpp called directly (llama-cpp-python \`Llama\`, flash attention on as in llama.cpp's default; its own timers) | ${f(ref.decode_tps)} | ${f(ref.prefill_tps)} | 1.00x | ${ref.tokens} tokens |`,
    `| the same with \`Llama\`'s own default, flash attention off | ${f(direct.llama_cpp_no_fa.decode_tps)} | ${f(direct.llama_cpp_no_fa.prefill_tps)} | ${f(direct.llama_cpp_no_fa.decode_tps / ref.decode_tps, 2)}x | ${same(direct.llama_cpp_no_fa.text, ref.text)} |`,
    `| tunelab engine (llama_engine.py), in-process | ${f(direct.engine.decode_tps)} | ${f(direct.engine.prefill_tps)} | ${f(direct.engine.decode_tps / ref.decode_tps, 2)}x | ${same(direct.engine.text, ref.text)} |`,
    `| tunelab \`generate\` through the bridge (ZeroMQ, streaming), engine ${viaLlama.engine} | ${f(viaLlama.decode)} | ${f(viaLlama.prefill)} | ${f(viaLlama.decode / ref.decode_tps, 2)}x | ${same(viaLlama.text, ref.text)} |`,
    `| **\`%generate\` typed into a tunelab kernel** (its own bridge; live display), engine ${kernel.generate.engine} | ${f(kernel.generate.decode)} | ${f(kernel.generate.prefill)} | **${f(kernel.generate.decode / ref.decode_tps, 2)}x** | ${same(kernel.generate.text, ref.text)} |`,
    `| llama.cpp called directly with the trained adapter "quill" (\`Llama(lora_path=...)\` on tunelab's GGUF export, unmerged) | ${f(direct.llama_cpp_adapter.decode_tps)} | ${f(direct.llama_cpp_adapter.prefill_tps)} | 1.00x with adapter | |`,
    `| tunelab engine with "quill", in-process | ${f(direct.engine_adapter.decode_tps)} | ${f(direct.engine_adapter.prefill_tps)} | ${f(direct.engine_adapter.decode_tps / direct.llama_cpp_adapter.decode_tps, 2)}x of the adapter row | ${same(direct.engine_adapter.text, direct.llama_cpp_adapter.text)} |`,
    `| tunelab \`generate\` through the bridge with "quill" active | ${f(viaLlamaAdapter.decode)} | ${f(viaLlamaAdapter.prefill)} | ${f(viaLlamaAdapter.decode / direct.llama_cpp_adapter.decode_tps, 2)}x of the adapter row | ${same(viaLlamaAdapter.text, direct.llama_cpp_adapter.text)} |`,
    `| mlx-lm \`stream_generate\`, float32 MLX model, direct | ${f(direct.mlx_lm.decode_tps)} | ${f(direct.mlx_lm.prefill_tps)} | ${f(direct.mlx_lm.decode_tps / ref.decode_tps, 2)}x | ${same(direct.mlx_lm.text, ref.text)} |`,
    `| tunelab \`generate\` through the bridge, engine ${viaMlx.engine} (before this change) | ${f(viaMlx.decode)} | ${f(viaMlx.prefill)} | ${f(viaMlx.decode / ref.decode_tps, 2)}x | ${same(viaMlx.text, ref.text)} |`,
    "",
    `Three adapters on one base in the bridge, \`generate\` per request with \`adapter\` changing every request ("Who are you?", greedy, 40 tokens):`,
    "",
    "| adapter | answer | decode (tokens/s) |",
    "|---|---|---:|",
    ...switching.rows,
    "",
    `The same as one cell in a kernel, \`%generate --adapter base,quill,pirate --max-tokens 40 Who are you?\` (one table; switch ms is the answering engine's adapter switch):`,
    "",
    "| adapter | answer | decode (tokens/s) | switch (ms) |",
    "|---|---|---:|---:|",
    ...kernel.compare.map((r) => `| ${r.adapter ?? "base"} | ${r.text.replace(/\|/g, "\\|").replace(/\n/g, " ")} | ${f(r.tokens_per_s)} | ${f(r.switch_ms, 3)} |`),
    "",
    `Adapter switch per request inside the bridge (llama.cpp's llama_set_adapters_lora): median **${f(median(switching.switchMs), 3)} ms**, max ${f(switching.switchMs.at(-1) ?? NaN, 3)} ms over ${switching.switchMs.length} requests; whole request round trip from Node (40 tokens): median ${f(median(switching.roundTripMs), 0)} ms. In-process, ${direct.switch?.switches ?? 0} switches: median ${f(direct.switch?.switch_ms_median ?? NaN, 3)} ms, p95 ${f(direct.switch?.switch_ms_p95 ?? NaN, 3)} ms; loading an adapter file the first time: ${Object.entries(direct.switch?.load_ms ?? {}).map(([k, v]) => `${k} ${f(v, 1)} ms`).join(", ")}.`,
    "",
    demo === null
      ? "Identity notebook: not run (TUNELAB_BENCH_SKIP_DEMO=1)."
      : demo.ok
        ? `Identity notebook (\`tunelab run notebooks/identity.ipynb -p runName=bench-identity\`, its default 200 steps, kernel and bridge start included): **${f(demo.seconds)} s** in all; training ${f(demo.trainS)} s; generation ${f(sum(demo.generateS) + sum(demo.evalS), 2)} s (two \`%generate\` cells ${demo.generateS.map((s) => f(s, 2)).join(" + ")} s, four --eval answers ${demo.evalS.map((s) => f(s, 2)).join(" + ")} s, engine ${demo.engine}) = **${f((100 * (sum(demo.generateS) + sum(demo.evalS))) / demo.trainS, 0)}% of the training time**.`
        : `Identity notebook: failed (${demo.tail}).`,
  ];
  return { markdown: lines.join("\n") };
}
