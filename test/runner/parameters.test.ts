import { describe, expect, it } from "vitest";
import { parseRunArgs } from "../../kernel/runner/cli.js";
import type { Notebook } from "../../kernel/runner/notebook.js";
import { injectParameters, parameterSource, parseAssignment } from "../../kernel/runner/parameters.js";

const nb = (tags: string[][]): Notebook => ({
  nbformat: 4,
  nbformat_minor: 5,
  metadata: {},
  cells: tags.map((t, i) => ({ cell_type: "code", id: `c${i}`, source: `// cell ${i}`, metadata: { tags: t }, outputs: [], execution_count: null })),
});

describe("parameters", () => {
  it("turn -p values into typed TypeScript constants", () => {
    const params = Object.fromEntries(["iters=40", "lr=1e-4", "model=smollm2", 'prompt="Who are you?"', "fast=true", "keys=[\"q\",\"v\"]", 'cfg={"r":8}', "none=null"].map((a) => parseAssignment("-p", a)));
    expect(parameterSource(params, "typescript")).toBe(
      '// Parameters\nconst iters = 40;\nconst lr = 0.0001;\nconst model = "smollm2";\nconst prompt = "Who are you?";\nconst fast = true;\nconst keys = ["q","v"];\nconst cfg = {"r":8};\nconst none = null;\n',
    );
    expect(parseAssignment("-r", "iters=40")).toEqual(["iters", "40"]);
    expect(parameterSource({ on: false, x: [1, null], s: "a\"b" }, "python")).toBe('# Parameters\non = False\nx = [1, None]\ns = "a\\"b"\n');
  });

  it("reject names that are not identifiers", () => {
    expect(() => parseAssignment("-p", "2x=1")).toThrow(/valid identifier/);
    expect(() => parseAssignment("-p", "novalue")).toThrow(/name=value/);
  });

  it("go right after the parameters cell and replace an earlier injected cell", () => {
    const notebook = nb([[], ["parameters"], ["injected-parameters"], []]);
    expect(injectParameters(notebook, { iters: 2 }, "typescript")).toBe(true);
    expect(notebook.cells.map((c) => c.metadata.tags)).toEqual([[], ["parameters"], ["injected-parameters"], []]);
    expect(notebook.cells[2].source).toBe("// Parameters\nconst iters = 2;\n");
    expect(notebook.cells[2].id).toMatch(/^[0-9a-f]{8}$/);
    const untagged = nb([[], []]);
    expect(injectParameters(untagged, { iters: 2 }, "typescript")).toBe(false);
    expect(untagged.cells[0].metadata.tags).toEqual(["injected-parameters"]);
  });

  it("combine -f, -p and -r with the flags winning", () => {
    const options = parseRunArgs(["nb.ipynb", "-p", "a=1", "-r", "b=2", "--timeout", "5", "--allow-errors"]);
    expect(options).toMatchObject({ parameters: { a: 1, b: "2" }, timeoutMs: 5000, allowErrors: true });
    expect(options !== "help" && options.output.endsWith("nb.executed.ipynb")).toBe(true);
    expect(() => parseRunArgs(["nb.ipynb", "--timeout", "soon"])).toThrow(/--timeout must be a positive number/);
    expect(() => parseRunArgs([])).toThrow(/one notebook/);
  });
});
