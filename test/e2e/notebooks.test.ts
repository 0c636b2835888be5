import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../kernel/paths.js";
import type { CodeCell, Notebook } from "../../kernel/runner/notebook.js";
import { ensureBuilt, readJson, runCli, TOOLS_PYTHON, tunelabKernelPath } from "../runner/fixtures.js";
import { expectStaticFigures } from "./notebook.js";

const NOTEBOOKS = join(PACKAGE_ROOT, "notebooks");
// The flagship notebook has its own end-to-end test with the same checks and more
// (test/bridge/identity.e2e.test.ts): running it twice would only double CI's slowest step.
const OWN_TEST = new Set(["identity.ipynb"]);
const SMALL = JSON.parse(readFileSync(join(PACKAGE_ROOT, "test", "e2e", "notebook-parameters.json"), "utf8")) as Record<string, Record<string, unknown>>;

function outputText(notebook: Notebook): string {
  return notebook.cells
    .filter((c): c is CodeCell => c.cell_type === "code")
    .flatMap((c) => c.outputs)
    .map((o) => {
      const out = o as { text?: string | string[]; data?: Record<string, string | string[]> };
      return [out.text ?? out.data?.["text/plain"] ?? ""].flat().join("");
    })
    .join("\n");
}

/** Every shipped notebook executes headlessly, as CI and `tunelab run` users run it. */
describe("notebooks/ through tunelab run", () => {
  const out = mkdtempSync(join(tmpdir(), "tunelab-notebooks-"));
  // This checkout's kernel, not whichever one `tunelab install` last put in the user's Jupyter path.
  const env = { JUPYTER_PATH: tunelabKernelPath() };
  beforeAll(() => ensureBuilt());

  for (const name of readdirSync(NOTEBOOKS).filter((f) => f.endsWith(".ipynb") && !OWN_TEST.has(f)).sort()) {
    it(`${name} runs to the end with small parameters`, async () => {
      const params = Object.entries(SMALL[name] ?? {}).flatMap(([k, v]) => ["-p", `${k}=${JSON.stringify(v)}`]);
      const output = join(out, name);
      const result = await runCli([join(NOTEBOOKS, name), ...params, "-o", output, "--html", join(out, name.replace(/\.ipynb$/, ".html")), "--timeout", "900"], env);
      expect(result.code, result.stderr.slice(-3000)).toBe(0);
      const notebook: Notebook = readJson(output);
      execFileSync(TOOLS_PYTHON, ["-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))", output]);
      expectStaticFigures(notebook);
      // Each notebook reproduces a write-up's experiment and says how its numbers compare.
      expect(outputText(notebook)).toMatch(/claimed/i);
    }, 1_500_000);
  }
});
