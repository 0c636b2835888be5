import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../kernel/paths.js";
import type { CodeCell, Notebook } from "../../kernel/runner/notebook.js";
import { ensureBuilt, runCli, TOOLS_PYTHON, tunelabKernelPath } from "../runner/fixtures.js";
import { expectStaticFigures } from "../e2e/notebook.js";
import { execFileSync } from "node:child_process";
import { bridgeInstalled, defaultModelDir } from "./fixtures.js";

const ready = bridgeInstalled && existsSync(join(defaultModelDir, "config.json"));

function texts(cell: CodeCell): string {
  return cell.outputs
    .map((o) => {
      const out = o as { output_type: string; text?: string | string[]; data?: Record<string, string | string[]> };
      return [out.text ?? out.data?.["text/plain"] ?? ""].flat().join("");
    })
    .join("\n");
}

/**
 * SLOW, NEEDS THE EMBEDDED MODEL (`npm run setup` imports SmolLM2-135M-Instruct): runs the flagship
 * notebook exactly as shipped (the reference recipe, 200 steps at LR 5e-5: under a minute on an idle
 * 2-core machine, many more when the machine is shared). Set TUNELAB_SKIP_SLOW=1 to leave it out.
 */
describe.skipIf(!ready || process.env.TUNELAB_SKIP_SLOW === "1")("[slow, embedded SmolLM2] the identity notebook", () => {
  it("trains the new identity: the loss falls far below its start and --eval answers with the new name only after training", async () => {
    ensureBuilt();
    const out = join(mkdtempSync(join(tmpdir(), "tunelab-identity-")), "identity.out.ipynb");
    const result = await runCli([join(PACKAGE_ROOT, "notebooks", "identity.ipynb"), "-o", out, "--html", out.replace(/\.ipynb$/, ".html"), "--timeout", "1500"], { JUPYTER_PATH: tunelabKernelPath() });
    const nb = JSON.parse(readFileSync(out, "utf8")) as Notebook;
    const cells = nb.cells.filter((c): c is CodeCell => c.cell_type === "code");
    expect(result.code, `${result.stderr.slice(-3000)}`).toBe(0);
    execFileSync(TOOLS_PYTHON, ["-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))", out]);
    expectStaticFigures(nb);

    const run = cells.find((c) => [c.source].flat().join("").includes("%tune"))!;
    const summary = texts(run);
    const first = Number(/first loss\s+([\d.]+)/.exec(summary)?.[1]);
    const last = Number(/last loss\s+([\d.]+)/.exec(summary)?.[1]);
    expect(first).toBeGreaterThan(2);
    expect(last).toBeLessThan(first / 4);
    expect(summary).toMatch(/completed 200 steps/);

    // The before/after table, and the notebook's own check (which throws when there is no shift).
    const verdict = texts(cells[cells.length - 1]!);
    expect(/^before: (.*)$/m.exec(verdict)?.[1]).not.toMatch(/quill/i);
    expect(/^after: +(.*)$/m.exec(verdict)?.[1]).toMatch(/quill/i);
    expect(verdict).toMatch(/now introduces itself as Quill/);
    // And a plain %generate after training answers with the adapter that %tune left active.
    const after = cells.find((c) => [c.source].flat().join("").startsWith("%generate"))!;
    expect(texts(after)).toMatch(/Quill/);
  }, 1_800_000);
});
