import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../kernel/paths.js";
import type { CodeCell, Notebook } from "../../kernel/runner/notebook.js";
import { descendants, isAlive } from "../../kernel/runner/processes.js";
import { codeCell, ensureBuilt, notebookDir, readJson, runCli, startCli, tunelabKernelPath, waitFor, writeTestNotebook } from "./fixtures.js";

const code = (nb: Notebook) => nb.cells.filter((c): c is CodeCell => c.cell_type === "code");
const streams = (cell: CodeCell) => cell.outputs.map((o) => (o.output_type === "stream" ? [o.text].flat().join("") : "")).join("");

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

describe("tunelab run on the tunelab kernel", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(() => {
    ensureBuilt();
    env = { JUPYTER_PATH: tunelabKernelPath() };
    dir = notebookDir("tunelab-run-ts-");
  });

  it("runs TypeScript cells with typed parameters and stops at a thrown error", async () => {
    const input = writeTestNotebook(dir, "ts.ipynb", "tunelab", [
      codeCell('const iters = 10;\nconst model = "base";\nconst keys: string[] = [];', ["parameters"]),
      codeCell('const doubled: number = iters * 2;\nconsole.log(`${model}: ${doubled} over ${keys.join("+")}`);'),
      codeCell('if (iters > 20) throw new Error(`too many iters: ${iters}`);\nconsole.log("fine")'),
      codeCell('console.log("never")'),
    ]);
    const ok = await runCli([input, "-p", "iters=15", "-p", "model=smollm2", "-p", 'keys=["q_proj","v_proj"]', "-o", join(dir, "ts.ok.ipynb")], env);
    expect(ok.code, ok.stderr).toBe(0);
    const cells = code(readJson(join(dir, "ts.ok.ipynb")));
    expect([cells[1].source].flat().join("")).toBe('// Parameters\nconst iters = 15;\nconst model = "smollm2";\nconst keys = ["q_proj","v_proj"];\n');
    expect(streams(cells[2])).toBe("smollm2: 30 over q_proj+v_proj\n");
    expect(streams(cells[4])).toBe("never\n");

    const failed = await runCli([input, "-p", "iters=40", "-o", join(dir, "ts.failed.ipynb")], env);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("too many iters: 40");
    const partial = code(readJson(join(dir, "ts.failed.ipynb")));
    expect(partial[3].outputs).toEqual([expect.objectContaining({ output_type: "error", evalue: expect.stringContaining("too many iters: 40") })]);
    expect(partial[4].outputs).toEqual([]);
  });

  it("on Ctrl-C during %tune leaves no kernel or MLX bridge process behind", async () => {
    const data = join(PACKAGE_ROOT, "data", "identity.jsonl");
    const input = writeTestNotebook(dir, "tune.ipynb", "tunelab", [
      codeCell(`%tune --model default --data ${data} --name ctrlc --iters 2000 --layers 2 --rank 4`),
      codeCell('console.log("never")'),
    ]);
    const run = startCli([input], env);
    // The kernel is the runner's child; the bridge is the kernel's child in its own process group.
    let tree: number[] = [];
    await waitFor(() => {
      tree = descendants(run.child.pid!);
      return tree.some((pid) => commandOf(pid).includes("tunelab_bridge"));
    }, 180_000, "the MLX bridge to start");
    // Let training get under way so that the interrupt lands in the middle of a job.
    await waitFor(() => readJsonSafe(join(dir, "runs", "ctrlc", "metrics.jsonl")) || false, 180_000, "the first training step").catch(() => undefined);
    tree = descendants(run.child.pid!);
    run.child.kill("SIGINT");
    const result = await run.done;
    expect(result.code).toBe(130);
    await waitFor(() => !tree.some(isAlive), 15_000, "every kernel and bridge process to exit").catch(() => undefined);
    expect(tree.filter(isAlive).map(commandOf)).toEqual([]);
    const [tune, never] = code(readJson(join(dir, "tune.executed.ipynb")));
    expect(tune.outputs.length).toBeGreaterThan(0);
    expect(never.outputs).toEqual([]);
  }, 400_000);
});

function readJsonSafe(path: string): boolean {
  try {
    return readFileSync(path, "utf8").trim().length > 0;
  } catch {
    return false;
  }
}
