import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../kernel/paths.js";
import type { Notebook } from "../../kernel/runner/notebook.js";
import { ensureBuilt, readJson, runCli, TOOLS_PYTHON } from "../runner/fixtures.js";
import { expectStaticFigures } from "./notebook.js";

const NOTEBOOKS = join(PACKAGE_ROOT, "notebooks");
// The flagship notebook has its own end-to-end test with the same checks and more
// (test/bridge/identity.e2e.test.ts): running it twice would only double CI's slowest step.
const OWN_TEST = new Set(["identity.ipynb"]);
const SMALL = JSON.parse(readFileSync(join(PACKAGE_ROOT, "test", "e2e", "notebook-parameters.json"), "utf8")) as Record<string, Record<string, unknown>>;

/** Every shipped notebook executes headlessly, as CI and `tunelab run` users run it. */
describe("notebooks/ through tunelab run", () => {
  const out = mkdtempSync(join(tmpdir(), "tunelab-notebooks-"));
  beforeAll(() => ensureBuilt());

  for (const name of readdirSync(NOTEBOOKS).filter((f) => f.endsWith(".ipynb") && !OWN_TEST.has(f)).sort()) {
    it(`${name} runs to the end with small parameters`, async () => {
      const params = Object.entries(SMALL[name] ?? {}).flatMap(([k, v]) => ["-p", `${k}=${JSON.stringify(v)}`]);
      const output = join(out, name);
      const result = await runCli([join(NOTEBOOKS, name), ...params, "-o", output, "--html", join(out, name.replace(/\.ipynb$/, ".html")), "--timeout", "900"]);
      expect(result.code, result.stderr.slice(-3000)).toBe(0);
      const notebook: Notebook = readJson(output);
      execFileSync(TOOLS_PYTHON, ["-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))", output]);
      expectStaticFigures(notebook);
    }, 1_500_000);
  }
});
