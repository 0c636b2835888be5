import { beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BRIDGE_PYTHON, PACKAGE_ROOT } from "../../kernel/paths.js";
import { ensureWorkerBuilt } from "./built.js";

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[]>;
  ename?: string;
  evalue?: string;
}
interface Cell {
  cell_type: string;
  source: string | string[];
  outputs?: Output[];
}

const joined = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join("") : v ?? "");

/** A Jupyter path holding a kernelspec that starts this checkout's kernel. */
function kernelPath(): string {
  const root = mkdtempSync(join(tmpdir(), "tunelab-ane-kspec-"));
  mkdirSync(join(root, "kernels", "tunelab"), { recursive: true });
  const spec = { argv: [process.execPath, join(PACKAGE_ROOT, "bin", "tunelab.js"), "kernel", "{connection_file}"], display_name: "TypeScript (tunelab)", language: "typescript" };
  writeFileSync(join(root, "kernels", "tunelab", "kernel.json"), JSON.stringify(spec));
  return root;
}

describe("notebooks/ane.ipynb executed headlessly through the kernel (cpu backend)", () => {
  let cells: Cell[];
  let stderr = "";

  beforeAll(() => {
    ensureWorkerBuilt();
    const cwd = mkdtempSync(join(tmpdir(), "tunelab-ane-nb-"));
    const output = join(cwd, "ane.out.ipynb");
    const params = ["benchShapes=--channels 128 --spatial 32 --depths 2,4", "warmup=1", "iters=2", "steps=60", "compileBudget=8", "backend=cpu"];
    try {
      execFileSync(process.execPath, [join(PACKAGE_ROOT, "bin", "tunelab.js"), "run", join(PACKAGE_ROOT, "notebooks", "ane.ipynb"), "-o", output, "--cwd", cwd, ...params.flatMap((p) => ["-p", p])], {
        env: { ...process.env, JUPYTER_PATH: kernelPath() },
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 280_000,
      });
    } catch (error) {
      stderr = String((error as { stderr?: Buffer }).stderr ?? error);
    }
    cells = (JSON.parse(readFileSync(output, "utf8")) as { cells: Cell[] }).cells.filter((c) => c.cell_type === "code");
  }, 300_000);

  const text = (cell: Cell) => (cell.outputs ?? []).map((o) => joined(o.text) + joined(o.data?.["text/plain"])).join("\n");
  const find = (pattern: RegExp) => cells.find((c) => pattern.test(joined(c.source)))!;

  it("runs every cell without an error", () => {
    expect(stderr).toBe("");
    const errors = cells.flatMap((c) => (c.outputs ?? []).filter((o) => o.output_type === "error"));
    expect(errors).toEqual([]);
  });

  it("compares the backends side by side and says which cannot run here", () => {
    const all = text(find(/%ane_bench --backend all/));
    expect(all).toContain("16x conv 256ch sp64");
    if (process.platform !== "darwin") expect(all).toContain(`ane: unavailable on ${process.platform}-${process.arch}`);
    // mlx runs the same stack through the MLX bridge wherever `npm run setup` installed it.
    if (existsSync(BRIDGE_PYTHON)) expect(all).toMatch(/^\s*mlx\s+16x conv 256ch sp64/m);
    else expect(all).toMatch(/mlx: unavailable/);
  });

  it("shows the checked benchmark table, its peak and its chart", () => {
    const cell = find(/tunelab\.magic\(`%ane_bench/);
    const shown = text(cell);
    expect(shown).toMatch(/cpu +2x conv 128ch sp32/);
    expect(shown).toMatch(/cpu +4x conv 128ch sp32/);
    expect(shown).toContain("sgemm 2048²");
    expect((cell.outputs ?? []).some((o) => o.data && "application/vnd.plotly.v1+json" in o.data)).toBe(true);
    expect(text(find(/const worst/))).toMatch(/2 configs; worst relative error against float64: \d\.\de-\d+; formulas hold: true/);
  });

  it("trains with worker restarts and follows the unbounded run's trajectory", () => {
    const restarts = text(find(/--name ane-restarts/));
    expect(restarts).toMatch(/cpu +completed +60 +0\.5009 +0\.\d{4} +2 +24/);
    expect(text(find(/const unbounded/))).toContain("restarts at steps 20, 40 vs 0; largest loss difference over 60 steps: 0.0e+0");
  });
});
