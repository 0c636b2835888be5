import { readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CodeCell } from "../../kernel/runner/notebook.js";
import { codeCell, comparableOutputs, ensureBuilt, markdownCell, notebookDir, pythonKernelPath, tunelabKernelPath, readJson, runCli, runNbclient, startJupyter, writeTestNotebook, type JupyterServer } from "./fixtures.js";

describe("tunelab run --server (a real Jupyter Server on loopback)", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let server: JupyterServer;

  beforeAll(async () => {
    ensureBuilt();
    env = { JUPYTER_PATH: [tunelabKernelPath(), pythonKernelPath()].join(delimiter) };
    dir = notebookDir("tunelab-remote-test-");
    server = await startJupyter({ root: dir, env });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("gives the same cell outputs for a tunelab notebook as a local run and as nbclient", async () => {
    const input = writeTestNotebook(dir, "same-ts.ipynb", "tunelab", [
      markdownCell("# Same everywhere"),
      codeCell("const n = 1;", ["parameters"]),
      codeCell('console.log("n =", n);\nconsole.error("to stderr");\n({ n, sq: n * n })'),
      codeCell('import { figure, table } from "tunelab/display";\nfigure({ data: [{ type: "scatter", x: [1, 2, 3], y: [n, n / 2, n / 3], name: "loss" }], layout: { title: { text: "Loss" } } })'),
      codeCell('table([{ step: 1, loss: n }, { step: 2, loss: n / 2 }])'),
      codeCell("%lsmagic"),
      codeCell('throw new Error("intentional")'),
    ]);
    const local = join(dir, "same-ts.local.ipynb");
    const remote = join(dir, "same-ts.remote.ipynb");
    const viaNbclient = join(dir, "same-ts.nbclient.ipynb");
    const l = await runCli([input, "-p", "n=7", "-o", local, "--allow-errors"], env);
    expect(l.code, l.stderr).toBe(0);
    const r = await runCli([input, "-p", "n=7", "-o", remote, "--allow-errors", "--server", server.url, "--token", server.token], env);
    expect(r.code, r.stderr).toBe(0);
    runNbclient(local, viaNbclient, "tunelab", env, dir);

    const expected = comparableOutputs(readJson(local));
    const flat = JSON.stringify(expected);
    for (const seen of ["n = 7", "to stderr", "application/vnd.plotly.v1+json", "image/svg+xml", "<table", "%tune", "intentional"]) expect(flat).toContain(seen);
    expect(comparableOutputs(readJson(remote))).toEqual(expected);
    expect(comparableOutputs(readJson(viaNbclient))).toEqual(expected);
  });

  it("gives the same cell outputs for an ipykernel notebook as a local run and as nbclient", async () => {
    const input = writeTestNotebook(dir, "same.ipynb", "python3", [
      markdownCell("# Same everywhere"),
      codeCell("n = 1", ["parameters"]),
      codeCell("import sys, os\nprint('n =', n)\nprint('to stderr', file=sys.stderr)\nprint(os.path.basename(os.getcwd()))"),
      codeCell("from IPython.display import display, HTML, Markdown\nh = display(HTML('<table><tr><td>a</td></tr></table>'), display_id='t1')\ndisplay(Markdown('**bold**'))\nh.update(HTML('<table><tr><td>b</td></tr></table>'))\n{'n': n, 'sq': n * n}"),
      codeCell("1/0"),
    ]);
    const local = join(dir, "same.local.ipynb");
    const remote = join(dir, "same.remote.ipynb");
    const viaNbclient = join(dir, "same.nbclient.ipynb");
    const l = await runCli([input, "-p", "n=7", "-o", local, "--allow-errors"], env);
    expect(l.code).toBe(0);
    const r = await runCli([input, "-p", "n=7", "-o", remote, "--allow-errors", "--server", server.url, "--token", server.token], env);
    expect(r.stderr).toContain(`on ${server.url}`);
    expect(r.code).toBe(0);
    // nbclient executes the locally parameterised notebook: the same code, cell for cell.
    const withParams = join(dir, "same.params.ipynb");
    const p = await runCli([input, "-p", "n=7", "-o", withParams, "--allow-errors", "-q"], env);
    expect(p.code).toBe(0);
    runNbclient(withParams, viaNbclient, "python3", env, dir);

    const expected = comparableOutputs(readJson(local));
    expect(JSON.stringify(expected)).toContain("n = 7");
    expect(JSON.stringify(expected)).toContain("<td>b</td>");
    expect(JSON.stringify(expected)).toContain("ZeroDivisionError");
    expect(comparableOutputs(readJson(remote))).toEqual(expected);
    // nbclient keeps ipykernel's error tracebacks, which name the cell by In[n] as ours do.
    expect(comparableOutputs(readJson(viaNbclient))).toEqual(expected);
  });

  it("stops at the first error on the server too and saves the partial notebook", async () => {
    const input = writeTestNotebook(dir, "fails.ipynb", "python3", [codeCell("x = 1"), codeCell("raise RuntimeError('remote failure')"), codeCell("print('never')")]);
    const result = await runCli([input, "--server", server.url, "--token", server.token], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("RuntimeError: remote failure");
    const cells = readJson(join(dir, "fails.executed.ipynb")).cells as CodeCell[];
    expect(cells[1].outputs[0]).toMatchObject({ output_type: "error", ename: "RuntimeError" });
    expect(cells[2].outputs).toEqual([]);
    // The session and its kernel were shut down on the server.
    const sessions = (await (await fetch(`${server.url}api/sessions`, { headers: { Authorization: `token ${server.token}` } })).json()) as unknown[];
    expect(sessions).toEqual([]);
  });

  it("says so when the token is wrong", async () => {
    const input = writeTestNotebook(dir, "token.ipynb", "python3", [codeCell("1")]);
    const result = await runCli([input, "--server", server.url, "--token", "wrong"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/refused the token/);
    expect(readFileSync(input, "utf8")).toContain('"1"');
  });
});
