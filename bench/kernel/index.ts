import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { PACKAGE_ROOT, TOOLS_VENV } from "../../kernel/paths.js";
import { KernelClient, type StartOptions } from "../../test/kernel/client.js";

/**
 * tunelab against its peers in one run: tslab 1.0.22's own kernel (same compiler, its own protocol
 * layer) and ipykernel (the reference Jupyter kernel). Every number comes from a real Jupyter
 * client over real ZeroMQ sockets (test/kernel/client.ts).
 */
interface Peer {
  name: string;
  start: StartOptions;
  trivial: string;
  fresh(i: number): string;
  busy(seconds: number): string;
}

export interface PeerResult {
  name: string;
  startupMs: number[];
  firstCellMs: number[];
  rerunMs: number[];
  freshMs: number[];
  idlePingMs: number[];
  busyPingMs: number[];
}

const python = join(TOOLS_VENV, "bin", "python");

function peers(): Peer[] {
  const require = createRequire(import.meta.url);
  const tslabBin = join(PACKAGE_ROOT, "node_modules", "tslab", "bin", "tslab");
  const tslabVersion = (require(join(PACKAGE_ROOT, "node_modules", "tslab", "package.json")) as { version: string }).version;
  let ipykernelVersion = "?";
  try {
    ipykernelVersion = execFileSync(python, ["-c", "import ipykernel; print(ipykernel.__version__)"], { encoding: "utf8" }).trim();
  } catch {
    // reported as "?" in the table
  }
  const tsBusy = (s: number) => `const t0 = Date.now();\nwhile (Date.now() - t0 < ${s * 1000}) {}`;
  return [
    { name: "tunelab", start: {}, trivial: "1+1", fresh: (i) => `${i}+1`, busy: tsBusy },
    {
      name: `tslab ${tslabVersion}`,
      start: { argv: [process.execPath, tslabBin, "kernel"], connectionFlag: ["--config-path"], transport: "tcp" },
      trivial: "1+1",
      fresh: (i) => `${i}+1`,
      busy: tsBusy,
    },
    {
      name: `ipykernel ${ipykernelVersion}`,
      start: { argv: [python, "-m", "ipykernel_launcher"], connectionFlag: ["-f"], transport: "tcp" },
      trivial: "1+1",
      fresh: (i) => `${i}+1`,
      busy: (s) => `import time\nt0 = time.time()\nwhile time.time() - t0 < ${s}: pass`,
    },
  ];
}

async function timed<T>(work: () => Promise<T>): Promise<[number, T]> {
  const started = performance.now();
  const value = await work();
  return [performance.now() - started, value];
}

/**
 * The machine is shared, so its load drifts: every measurement is interleaved across the peers
 * (start-ups round-robin, then cell by cell) so that drift lands on all of them alike.
 */
async function measureAll(list: Peer[], options: { starts: number; cells: number; busySeconds: number }): Promise<PeerResult[]> {
  const results = list.map((peer): PeerResult => ({ name: peer.name, startupMs: [], firstCellMs: [], rerunMs: [], freshMs: [], idlePingMs: [], busyPingMs: [] }));
  const kernels: KernelClient[] = [];
  try {
    for (let i = 0; i < options.starts; i++) {
      for (const [p, peer] of list.entries()) {
        const kernel = await KernelClient.start({ ...peer.start, cwd: PACKAGE_ROOT });
        const [startup] = await timed(() => kernel.ready(120_000));
        results[p].startupMs.push(startup);
        // Straight after start-up, as a notebook's first cell is (tunelab is still warming its compiler).
        const [first, run] = await timed(() => kernel.execute(peer.trivial, { timeoutMs: 120_000 }));
        if (run.reply.content.status !== "ok") throw new Error(`${peer.name}: '${peer.trivial}' failed: ${JSON.stringify(run.reply.content)}`);
        results[p].firstCellMs.push(first);
        // The last kernel of each peer stays up for the cells.
        if (i === options.starts - 1) kernels[p] = kernel;
        else await kernel.close();
      }
    }
    for (let c = 0; c < options.cells; c++) {
      for (const [p, peer] of list.entries()) {
        results[p].rerunMs.push((await timed(() => kernels[p].execute(peer.trivial)))[0]);
        results[p].freshMs.push((await timed(() => kernels[p].execute(peer.fresh(c + 2))))[0]);
        results[p].idlePingMs.push(await kernels[p].ping());
      }
    }
    for (const [p, peer] of list.entries()) {
      const kernel = kernels[p];
      const busy = await kernel.startExecute(peer.busy(options.busySeconds));
      // Give the cell time to start its loop (tslab sends no execute_input to wait for).
      await new Promise((r) => setTimeout(r, 500));
      const until = Date.now() + (options.busySeconds - 1.5) * 1000;
      while (Date.now() < until) {
        results[p].busyPingMs.push(await kernel.ping());
        await new Promise((r) => setTimeout(r, 50));
      }
      await kernel.reply("shell", busy, 60_000);
    }
  } finally {
    await Promise.all(kernels.map((k) => k?.close()));
  }
  return results;
}

function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function ms(value: number): string {
  if (!Number.isFinite(value)) return "no answer in 2 s";
  return value >= 100 ? `${Math.round(value)} ms` : value >= 1 ? `${value.toFixed(1)} ms` : `${value.toFixed(2)} ms`;
}

export function renderMarkdown(results: PeerResult[], options: { starts: number; cells: number; busySeconds: number }): string {
  const header = `| | ${results.map((r) => r.name).join(" | ")} |\n|---|${results.map(() => "---:").join("|")}|`;
  const row = (label: string, cell: (r: PeerResult) => string) => `| ${label} | ${results.map(cell).join(" | ")} |`;
  const busyCell = (r: PeerResult) => {
    const answered = r.busyPingMs.filter(Number.isFinite).length;
    return `${ms(quantile(r.busyPingMs, 0.5))} median, ${ms(Math.max(...r.busyPingMs))} max (${answered}/${r.busyPingMs.length} answered)`;
  };
  const lines = [
    header,
    row(`start-up: spawn to kernel_info_reply (median of ${options.starts})`, (r) => ms(quantile(r.startupMs, 0.5))),
    row(`first cell \`1+1\` sent right after kernel_info_reply (median of ${options.starts})`, (r) => ms(quantile(r.firstCellMs, 0.5))),
    row("spawn to the first cell's result (sum of the medians above)", (r) => ms(quantile(r.startupMs, 0.5) + quantile(r.firstCellMs, 0.5))),
    row(`trivial cell \`1+1\` re-run: round trip to idle (median of ${options.cells}, p90)`, (r) => `${ms(quantile(r.rerunMs, 0.5))} (${ms(quantile(r.rerunMs, 0.9))})`),
    row(`trivial cell, new source each time (\`2+1\`, \`3+1\`, ...; median, p90)`, (r) => `${ms(quantile(r.freshMs, 0.5))} (${ms(quantile(r.freshMs, 0.9))})`),
    row(`heartbeat round trip, kernel idle (median of ${options.cells})`, (r) => ms(quantile(r.idlePingMs, 0.5))),
    row(`heartbeat round trip while a cell runs a ${options.busySeconds} s synchronous loop`, busyCell),
  ];
  const [ours, tslab] = results;
  const ratio = quantile(ours.rerunMs, 0.5) / quantile(tslab.rerunMs, 0.5);
  const freshRatio = quantile(ours.freshMs, 0.5) / quantile(tslab.freshMs, 0.5);
  lines.push(
    "",
    `tunelab's trivial cell takes ${(ratio * 100).toFixed(0)}% of tslab's time when re-run (compiled output cached while the code and every declaration before it are unchanged) and ${(freshRatio * 100).toFixed(0)}% for new source; ` +
      `start-up is ${(quantile(ours.startupMs, 0.5) / quantile(tslab.startupMs, 0.5)).toFixed(2)}x tslab's: tunelab answers kernel_info before loading the compiler and warms it in the background, so a first cell sent at once waits for that warm-up (tslab pays the same cost before kernel_info).`,
  );
  return lines.join("\n");
}

/** Runs the side-by-side kernel benchmark; `markdown` is a table for BENCHMARKS.md. */
export async function runKernelBench(options: Partial<{ starts: number; cells: number; busySeconds: number }> = {}): Promise<{ markdown: string; results: PeerResult[] }> {
  const settings = { starts: options.starts ?? 3, cells: options.cells ?? 30, busySeconds: options.busySeconds ?? 4 };
  const results = await measureAll(peers(), settings);
  return { markdown: renderMarkdown(results, settings), results };
}
