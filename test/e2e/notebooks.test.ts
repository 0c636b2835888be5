import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../kernel/paths.js";
import type { CodeCell, Notebook } from "../../kernel/runner/notebook.js";
import { ensureBuilt, readJson, runCli, TOOLS_PYTHON } from "../runner/fixtures.js";

const NOTEBOOKS = join(PACKAGE_ROOT, "notebooks");
const PLOTLY = "application/vnd.plotly.v1+json";
const SMALL = JSON.parse(readFileSync(join(PACKAGE_ROOT, "test", "e2e", "notebook-parameters.json"), "utf8")) as Record<string, Record<string, unknown>>;

/** Every shipped notebook executes headlessly, as CI and `tunelab run` users run it. */
describe("notebooks/ through tunelab run", () => {
  const out = mkdtempSync(join(tmpdir(), "tunelab-notebooks-"));
  beforeAll(() => ensureBuilt());

  for (const name of readdirSync(NOTEBOOKS).filter((f) => f.endsWith(".ipynb")).sort()) {
    it(`${name} runs to the end with small parameters`, async () => {
      const params = Object.entries(SMALL[name] ?? {}).flatMap(([k, v]) => ["-p", `${k}=${JSON.stringify(v)}`]);
      const output = join(out, name);
      const result = await runCli([join(NOTEBOOKS, name), ...params, "-o", output, "--html", join(out, name.replace(/\.ipynb$/, ".html")), "--timeout", "900"]);
      expect(result.code, result.stderr.slice(-3000)).toBe(0);
      const notebook: Notebook = readJson(output);
      execFileSync(TOOLS_PYTHON, ["-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))", output]);
      // Figures must render without a browser and without plotly (GitHub, nbviewer): a static SVG rides along.
      for (const cell of notebook.cells.filter((c): c is CodeCell => c.cell_type === "code")) {
        for (const o of cell.outputs) {
          if (o.output_type !== "display_data" && o.output_type !== "execute_result") continue;
          const html = [o.data["text/html"] ?? ""].flat().join("");
          if (o.data[PLOTLY] || html.includes("tunelab-figure")) {
            expect(Object.keys(o.data), `a figure in cell ${cell.execution_count}`).toEqual(expect.arrayContaining(["image/svg+xml", "text/html"]));
          }
        }
      }
    }, 1_500_000);
  }
});
