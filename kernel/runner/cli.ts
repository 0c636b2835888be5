import { dirname, basename, extname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { UsageError } from "../errors.js";
import type { KernelHandle } from "./kernel-handle.js";
import { executeNotebook, type CellStatus, type RunOutcome } from "./executor.js";
import { findKernelSpec } from "./kernelspec.js";
import { readNotebook, text, writeNotebook, type Notebook } from "./notebook.js";
import { injectParameters, parseAssignment, readParameterFile, type Parameters } from "./parameters.js";

const USAGE = `usage: tunelab run NOTEBOOK.ipynb [options]

  -p, --parameter NAME=VALUE   set a parameter (JSON value, else a string); repeatable
  -r, --raw-parameter NAME=VALUE  set a parameter to the raw string VALUE; repeatable
  -f, --parameters-file FILE   a JSON object of parameters (-p and -r win over it)
  -o, --output OUT.ipynb       where the executed notebook goes (default: NAME.executed.ipynb beside the input)
      --html OUT.html          also write a self-contained HTML report
      --timeout SECONDS        interrupt a cell that runs longer (default: no limit)
      --startup-timeout SECONDS  how long the kernel may take to start (default: 60)
      --allow-errors           keep going after a failing cell
      --kernel NAME            run another installed kernel (default: the notebook's, else tunelab)
      --server URL             run on a Jupyter Server instead of a local kernel
      --token TOKEN            the server's token (default: $JUPYTER_TOKEN)
      --remote-path PATH       the notebook's path on the server (default: its file name)
      --cwd DIR                the local kernel's working directory (default: the notebook's folder)
      --log-output             echo the cells' stdout and stderr on the terminal
  -q, --quiet                  no per-cell progress`;

export interface RunOptions {
  input: string;
  output: string;
  html?: string;
  parameters: Parameters;
  timeoutMs?: number;
  startupTimeoutMs: number;
  allowErrors: boolean;
  kernel?: string;
  server?: string;
  token?: string;
  remotePath?: string;
  cwd?: string;
  logOutput: boolean;
  quiet: boolean;
}

function seconds(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number of seconds, got '${value}'.`);
  return n * 1000;
}

export function parseRunArgs(argv: string[]): RunOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        parameter: { type: "string", short: "p", multiple: true },
        "raw-parameter": { type: "string", short: "r", multiple: true },
        "parameters-file": { type: "string", short: "f" },
        output: { type: "string", short: "o" },
        html: { type: "string" },
        timeout: { type: "string" },
        "startup-timeout": { type: "string" },
        "allow-errors": { type: "boolean" },
        kernel: { type: "string" },
        server: { type: "string" },
        token: { type: "string" },
        "remote-path": { type: "string" },
        cwd: { type: "string" },
        "log-output": { type: "boolean" },
        quiet: { type: "boolean", short: "q" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split("\n")[0]}; see \`tunelab run --help\`.`);
  }
  const { values, positionals } = parsed;
  if (values.help) return "help";
  if (positionals.length !== 1) throw new UsageError(`tunelab run takes one notebook, got ${positionals.length === 0 ? "none" : positionals.join(", ")}; see \`tunelab run --help\`.`);
  const input = resolve(positionals[0]);
  const parameters: Parameters = values["parameters-file"] ? readParameterFile(values["parameters-file"]) : {};
  for (const a of values.parameter ?? []) {
    const [name, value] = parseAssignment("-p", a);
    parameters[name] = value;
  }
  for (const a of values["raw-parameter"] ?? []) {
    const [name, value] = parseAssignment("-r", a);
    parameters[name] = value;
  }
  if (values.token && !values.server) throw new UsageError("--token only makes sense with --server URL.");
  const stem = basename(input, extname(input));
  return {
    input,
    output: resolve(values.output ?? join(dirname(input), `${stem}.executed.ipynb`)),
    html: values.html ? resolve(values.html) : undefined,
    parameters,
    timeoutMs: seconds("--timeout", values.timeout),
    startupTimeoutMs: seconds("--startup-timeout", values["startup-timeout"]) ?? 60_000,
    allowErrors: values["allow-errors"] ?? false,
    kernel: values.kernel,
    server: values.server,
    token: values.token ?? process.env.JUPYTER_TOKEN,
    remotePath: values["remote-path"],
    cwd: values.cwd ? resolve(values.cwd) : undefined,
    logOutput: values["log-output"] ?? false,
    quiet: values.quiet ?? false,
  };
}

const MARK: Record<CellStatus, string> = { ok: "ok", error: "ERROR", timeout: "TIMEOUT", interrupted: "INTERRUPTED", died: "KERNEL DIED" };

function counter(position: number, total: number): string {
  return `[${String(position + 1).padStart(String(total).length)}/${total}]`;
}

function snippet(source: string): string {
  const line = source.split("\n").find((l) => l.trim() !== "") ?? "";
  return line.length > 50 ? `${line.slice(0, 49)}…` : line;
}

export interface RunResult {
  outcome: RunOutcome;
  notebook: Notebook;
  output: string;
  html?: string;
}

/**
 * Runs a notebook end to end: start the kernel, inject the parameters, execute, always write what
 * was executed (a failed run is exactly when the partial notebook is needed), always clean up.
 */
export async function runNotebook(options: RunOptions, signal?: AbortSignal, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<RunResult> {
  const notebook = readNotebook(options.input);
  inFlight = { notebook, output: options.output };
  const kernelName = options.kernel ?? notebook.metadata.kernelspec?.name ?? "tunelab";
  let kernel: KernelHandle;
  if (options.server) {
    const { RemoteKernel } = await import("./remote-kernel.js");
    if (!options.quiet) log(`tunelab run: starting a '${kernelName}' kernel on ${options.server}`);
    kernel = await RemoteKernel.start({
      url: options.server,
      token: options.token ?? "",
      kernelName,
      path: options.remotePath ?? basename(options.input),
      startupTimeoutMs: options.startupTimeoutMs,
    });
    notebook.metadata.kernelspec = { ...notebook.metadata.kernelspec, name: kernelName, display_name: notebook.metadata.kernelspec?.display_name ?? kernelName };
  } else {
    const spec = findKernelSpec(kernelName);
    const { LocalKernel } = await import("./local-kernel.js");
    if (!options.quiet) log(`tunelab run: starting the '${kernelName}' kernel`);
    kernel = await LocalKernel.start(spec, { cwd: options.cwd ?? dirname(options.input), startupTimeoutMs: options.startupTimeoutMs, signal });
    notebook.metadata.kernelspec = { name: spec.name, display_name: spec.displayName, language: spec.language };
  }
  let outcome: RunOutcome | undefined;
  try {
    if (Object.keys(options.parameters).length > 0) {
      const language = kernel.info.language_info?.name ?? notebook.metadata.kernelspec?.language ?? "typescript";
      if (!injectParameters(notebook, options.parameters, language)) {
        log("tunelab run: no cell is tagged 'parameters'; the parameters go in a first cell.");
      }
    }
    outcome = await executeNotebook(notebook, kernel, {
      timeoutMs: options.timeoutMs,
      allowErrors: options.allowErrors,
      signal,
      hooks: {
        onCellStart: (cell, position, total) => {
          if (options.quiet) return;
          const line = `${counter(position, total)} ${"running".padEnd(11)}          ${snippet(text(cell.source))}`;
          // On a terminal the running line is replaced by the finished one; in a log both stay.
          if (options.logOutput || !process.stderr.isTTY) log(line);
          else process.stderr.write(line);
        },
        onCellComplete: (cell, position, total, status, s) => {
          if (options.quiet) return;
          if (!options.logOutput && process.stderr.isTTY) process.stderr.write("\r\x1b[K");
          log(`${counter(position, total)} ${MARK[status].padEnd(11)} ${s.toFixed(1).padStart(6)} s  ${snippet(text(cell.source))}`);
        },
        onIOPub: options.logOutput
          ? (message) => {
              if (message.header.msg_type !== "stream") return;
              const content = message.content as { name: string; text: string };
              (content.name === "stderr" ? process.stderr : process.stdout).write(content.text);
            }
          : undefined,
      },
    });
  } finally {
    await kernel.shutdown({ force: signal?.aborted && forced(signal) });
    // Even an unexpected failure leaves the cells executed so far on disk.
    if (!outcome) writeNotebook(options.output, notebook);
  }
  notebook.metadata.tunelab = { parameters: options.parameters, status: outcome.status };
  writeNotebook(options.output, notebook);
  if (options.html) {
    const { renderReport } = await import("./report.js");
    await renderReport(notebook, options.html, { title: basename(options.input) });
  }
  return { outcome, notebook, output: options.output, html: options.html };
}

/** The notebook being run, so that a forced stop can still save what was executed. */
let inFlight: { notebook: Notebook; output: string } | undefined;

/** The reason a second Ctrl-C puts on the signal: clean up without asking the kernel. */
const FORCE = "force";
function forced(signal: AbortSignal): boolean {
  return signal.reason === FORCE;
}

export async function run(argv: string[]): Promise<number> {
  const options = parseRunArgs(argv);
  if (options === "help") {
    console.log(USAGE);
    return 0;
  }
  // @jupyterlab/services logs its WebSocket connections with console.debug; stdout is for cell output.
  if (options.server) console.debug = () => undefined;
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (name: NodeJS.Signals) => {
    interrupts++;
    if (interrupts === 1 && name === "SIGINT") {
      process.stderr.write("\ntunelab run: interrupting the kernel (Ctrl-C again to stop at once)\n");
      controller.abort("interrupt");
    } else {
      // A forced stop: LocalKernel's exit hook kills the kernel and its helpers on the way out.
      process.stderr.write("\ntunelab run: stopping now\n");
      if (!controller.signal.aborted) controller.abort(FORCE);
      if (inFlight) {
        try {
          writeNotebook(inFlight.output, inFlight.notebook);
          process.stderr.write(`tunelab run: wrote the partial notebook to ${inFlight.output}\n`);
        } catch {
          // Nothing more can be done on the way out.
        }
      }
      process.exit(130);
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  // Idle HTTP keep-alive connections (remote runs) would hold the process open for seconds after the work is done.
  const exitSoon = (code: number) => setTimeout(() => process.exit(code), 200).unref();
  try {
    const { outcome, output, html } = await runNotebook(options, controller.signal);
    const where = [output, html].filter(Boolean).join(" and ");
    if (outcome.status === "ok") {
      if (!options.quiet) process.stderr.write(`tunelab run: ${outcome.cellsRun} cells ran; wrote ${where}\n`);
      exitSoon(0);
      return 0;
    }
    const error = outcome.error ? `${outcome.error.ename}: ${outcome.error.evalue}` : outcome.status;
    process.stderr.write(`tunelab run: stopped at cell ${outcome.failedPosition ?? "?"} (${error}); wrote the partial notebook to ${where}\n`);
    const code = outcome.status === "interrupted" ? 130 : 1;
    exitSoon(code);
    return code;
  } catch (error) {
    if (controller.signal.aborted) {
      process.stderr.write(`tunelab run: ${(error as Error).message}\n`);
      exitSoon(130);
      return 130;
    }
    exitSoon(1);
    throw error;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
  }
}
