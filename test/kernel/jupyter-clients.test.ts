import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

// Jupyter's own Python clients drive the installed kernelspec (installed into a private data dir).
const ROOT = resolve(import.meta.dirname, "..", "..");
const PYTHON = join(process.env.TUNELAB_TOOLS_VENV ?? join(ROOT, ".venv-tools"), "bin", "python");

function pytest(file: string): { status: number | null; output: string } {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing; run: node bin/tunelab.js setup --test`);
  const run = spawnSync(PYTHON, ["-m", "pytest", "-q", "-p", "no:cacheprovider", join("test", "kernel", file)], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 600_000,
  });
  return { status: run.status, output: `${run.stdout}\n${run.stderr}` };
}

describe("Jupyter clients against the tunelab kernel", () => {
  it("passes jupyter_kernel_test's conformance suite", () => {
    const { status, output } = pytest("test_conformance.py");
    expect(output).toMatch(/\d+ passed/);
    expect(status, output).toBe(0);
  }, 600_000);

  it("runs a notebook through nbclient with every output in its own cell", () => {
    const { status, output } = pytest("test_notebook.py");
    expect(status, output).toBe(0);
  }, 600_000);
});
