import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { isAlive } from "../../kernel/runner/processes.js";
import type { CodeCell, Notebook } from "../../kernel/runner/notebook.js";
import { codeCell, ensureBuilt, markdownCell, pythonKernelPath, readJson, runCli, startCli, waitFor, writeTestNotebook } from "./fixtures.js";

// `--kernel NAME` runs any installed kernel; ipykernel is the reference client-side behaviour.
describe("tunelab run on a local kernel (ipykernel)", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(() => {
    ensureBuilt();
    env = { JUPYTER_PATH: pythonKernelPath() };
    dir = mkdtempSync(join(tmpdir(), "tunelab-run-test-"));
  });

  const code = (nb: Notebook) => nb.cells.filter((c): c is CodeCell => c.cell_type === "code");
  const streamText = (cell: CodeCell) => cell.outputs.map((o) => (o.output_type === "stream" ? [o.text].flat().join("") : "")).join("");

  it("injects parameters after the parameters cell and writes the executed notebook", async () => {
    const input = writeTestNotebook(dir, "params.ipynb", "python3", [
      markdownCell("# Parameters demo"),
      codeCell("iters = 1\nname = 'base'\ncfg = {}", ["parameters"]),
      codeCell("print(iters * 2, name, cfg['depth'], flag)"),
      codeCell("from IPython.display import display, HTML\nh = display(HTML('<b>first</b>'), display_id=True)\nh.update(HTML('<b>updated</b>'))\niters + 1"),
    ]);
    const output = join(dir, "params.out.ipynb");
    const result = await runCli([input, "-p", "iters=40", "-p", "name=smollm", "-p", 'cfg={"depth": 3}', "-p", "flag=true", "-o", output], env);
    expect(result.stderr).toMatch(/\[4\/4\] ok/);
    expect(result.code).toBe(0);
    const nb = readJson(output);
    const injected = nb.cells[2];
    expect(injected.metadata.tags).toEqual(["injected-parameters"]);
    expect([injected.source].flat().join("")).toBe('# Parameters\niters = 40\nname = "smollm"\ncfg = {"depth": 3}\nflag = True\n');
    const cells = code(nb);
    expect(streamText(cells[2])).toBe("80 smollm 3 True\n");
    const last = cells[3].outputs;
    expect(last[0]).toMatchObject({ output_type: "display_data", data: { "text/html": ["<b>updated</b>"] } });
    expect(last[1]).toMatchObject({ output_type: "execute_result", data: { "text/plain": ["41"] }, execution_count: 4 });

    // Running the executed notebook again replaces the injected cell instead of adding one.
    const again = await runCli([output, "-p", "iters=2", "-p", 'cfg={"depth": 1}', "-p", "flag=false", "-o", join(dir, "params.again.ipynb"), "-q"], env);
    expect(again.code).toBe(0);
    const nb2 = readJson(join(dir, "params.again.ipynb"));
    expect(nb2.cells.filter((c) => (c.metadata.tags ?? []).includes("injected-parameters"))).toHaveLength(1);
    expect(streamText(code(nb2)[2])).toBe("4 base 1 False\n");
  });

  it("stops at the first error with a non-zero exit and saves the partial notebook with the error", async () => {
    const input = writeTestNotebook(dir, "fails.ipynb", "python3", [
      codeCell("print('before')"),
      codeCell("raise ValueError('intentional failure')"),
      codeCell("print('never')"),
    ]);
    const result = await runCli([input], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("ValueError: intentional failure");
    const nb = readJson(join(dir, "fails.executed.ipynb"));
    const [first, failing, never] = code(nb);
    expect(streamText(first)).toBe("before\n");
    expect(failing.outputs).toEqual([expect.objectContaining({ output_type: "error", ename: "ValueError", evalue: "intentional failure" })]);
    expect(never.outputs).toEqual([]);
    expect(never.execution_count).toBeNull();

    const allowed = await runCli([input, "--allow-errors", "-o", join(dir, "fails.allowed.ipynb"), "--html", join(dir, "fails.html")], env);
    expect(allowed.code).toBe(0);
    expect(streamText(code(readJson(join(dir, "fails.allowed.ipynb")))[2])).toBe("never\n");
    const html = readFileSync(join(dir, "fails.html"), "utf8");
    expect(html).toContain("ValueError: intentional failure");
    expect(html).not.toContain("\u001b[");
  });

  it("interrupts a cell that runs past --timeout", async () => {
    const input = writeTestNotebook(dir, "slow.ipynb", "python3", [codeCell("import time\ntime.sleep(120)"), codeCell("print('after')")]);
    const started = Date.now();
    const result = await runCli([input, "--timeout", "3"], env);
    expect(result.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(60_000);
    const [slow, after] = code(readJson(join(dir, "slow.executed.ipynb")));
    expect(slow.outputs.map((o) => (o.output_type === "error" ? o.ename : o.output_type))).toContain("CellTimeoutError");
    expect(after.outputs).toEqual([]);
  });

  it("on Ctrl-C interrupts the cell, saves the notebook and leaves no kernel or child process behind", async () => {
    const pidFile = join(dir, "helper.pid");
    // The helper lives in its own session, like the MLX bridge: killing the kernel's group misses it.
    const input = writeTestNotebook(dir, "ctrlc.ipynb", "python3", [
      codeCell(`import os, subprocess\nhelper = subprocess.Popen(['sleep', '600'], start_new_session=True)\nopen(${JSON.stringify(pidFile)}, 'w').write(f"{os.getpid()} {helper.pid}")`),
      codeCell("import time\nprint('working', flush=True)\ntime.sleep(600)"),
      codeCell("print('never')"),
    ]);
    const run = startCli([input], env);
    await waitFor(() => existsSync(pidFile) && run.stderrSoFar().includes("[1/3] ok"), 60_000, "the first cell");
    const [kernelPid, helperPid] = readFileSync(pidFile, "utf8").split(" ").map(Number);
    expect(isAlive(kernelPid) && isAlive(helperPid)).toBe(true);
    await new Promise((r) => setTimeout(r, 1000));
    run.child.kill("SIGINT");
    const result = await run.done;
    expect(result.code).toBe(130);
    expect(isAlive(kernelPid)).toBe(false);
    expect(isAlive(helperPid)).toBe(false);
    const [, working, never] = code(readJson(join(dir, "ctrlc.executed.ipynb")));
    expect(working.outputs.some((o) => o.output_type === "error" && o.ename === "KeyboardInterrupt")).toBe(true);
    expect(never.outputs).toEqual([]);
  });

  it("names a missing kernel and how to fix it", async () => {
    const input = writeTestNotebook(dir, "nokernel.ipynb", "python3", [codeCell("1")]);
    const result = await runCli([input, "--kernel", "no-such-kernel"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/No Jupyter kernel named 'no-such-kernel'/);
  });
});
