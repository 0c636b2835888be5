/**
 * `tunelab run` against nbclient (Jupyter's reference executor, as used by nbconvert and papermill)
 * on the same notebook and the same kernel, in one run: each measurement is a whole command, from
 * process start to exit, kernel start-up and shutdown included, alternating the two clients.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { kernelSpec } from "../../kernel/install.js";
import { PACKAGE_ROOT, TOOLS_VENV } from "../../kernel/paths.js";

const PYTHON = join(TOOLS_VENV, "bin", "python");
const CLI = join(PACKAGE_ROOT, "bin", "tunelab.js");
const ROUNDS = 3;
const CELLS = 12;

const NBCLIENT = `
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, kernel_name=sys.argv[3], timeout=600, resources={"metadata": {"path": sys.argv[4]}}).execute()
nbformat.write(nb, sys.argv[2])
`;

function cells(language: "typescript" | "python"): string[] {
  const out: string[] = [];
  for (let i = 0; i < CELLS; i++) {
    out.push(
      language === "typescript"
        ? `const v${i} = Array.from({ length: 2000 }, (_, k) => Math.sqrt(k + ${i})).reduce((a, b) => a + b, 0);\nconsole.log("cell ${i}", v${i}.toFixed(3));\n({ cell: ${i}, value: v${i} })`
        : `import math\nv${i} = sum(math.sqrt(k + ${i}) for k in range(2000))\nprint("cell ${i}", f"{v${i}:.3f}")\n{"cell": ${i}, "value": v${i}}`,
    );
  }
  return out;
}

function writeNotebook(path: string, kernel: string, language: "typescript" | "python"): void {
  const notebook = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: kernel, display_name: kernel } },
    cells: cells(language).map((source, i) => ({ id: `c${i}`, cell_type: "code", source, metadata: {}, outputs: [], execution_count: null })),
  };
  writeFileSync(path, JSON.stringify(notebook, null, 1));
}

function timed(command: string, args: string[], env: NodeJS.ProcessEnv): number {
  const started = process.hrtime.bigint();
  const result = spawnSync(command, args, { env: { ...process.env, ...env }, encoding: "utf8" });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`${command} ${args.slice(0, 2).join(" ")} failed (${result.status}):\n${(result.stderr ?? "").slice(-2000)}`);
  return seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function runRunnerBench(): Promise<{ markdown: string }> {
  const dir = mkdtempSync(join(tmpdir(), "tunelab-runner-bench-"));
  try {
    // Kernelspecs as Jupyter would find them: this package's kernel and ipykernel (absolute interpreter).
    const tunelabData = join(dir, "jupyter");
    mkdirSync(join(tunelabData, "kernels", "tunelab"), { recursive: true });
    writeFileSync(join(tunelabData, "kernels", "tunelab", "kernel.json"), JSON.stringify(kernelSpec()));
    const pythonPrefix = join(dir, "prefix");
    execFileSync(PYTHON, ["-m", "ipykernel", "install", "--prefix", pythonPrefix, "--name", "python3"], { stdio: "ignore" });
    const env = { JUPYTER_PATH: [tunelabData, join(pythonPrefix, "share", "jupyter")].join(delimiter) };

    const rows: string[] = [];
    for (const [kernel, language] of [["tunelab", "typescript"], ["python3", "python"]] as const) {
      const input = join(dir, `${kernel}.ipynb`);
      writeNotebook(input, kernel, language);
      const ours: number[] = [];
      const theirs: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        ours.push(timed(process.execPath, [CLI, "run", input, "-q", "-o", join(dir, `${kernel}.tunelab.ipynb`)], env));
        theirs.push(timed(PYTHON, ["-c", NBCLIENT, input, join(dir, `${kernel}.nbclient.ipynb`), kernel, dir], env));
      }
      const a = median(ours);
      const b = median(theirs);
      rows.push(`| ${kernel} | ${CELLS} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${(a / b).toFixed(2)} | ${ours.map((x) => x.toFixed(2)).join(", ")} / ${theirs.map((x) => x.toFixed(2)).join(", ")} |`);
    }
    return {
      markdown: [
        `Whole command wall time (median of ${ROUNDS}, alternating), from process start to exit: kernel start-up, ${CELLS} small code cells, writing the notebook, kernel shutdown.`,
        "",
        "| kernel | cells | `tunelab run` (s) | nbclient (s) | ratio (lower is faster) | all rounds: tunelab / nbclient |",
        "|---|---|---|---|---|---|",
        ...rows,
      ].join("\n"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
