import type { KernelMessage } from "@jupyterlab/services";
import { KernelDiedError, type KernelHandle } from "./kernel-handle.js";
import { tagsOf, text, type CodeCell, type Notebook, type Output } from "./notebook.js";
import { OutputCollector } from "./outputs.js";

export type CellStatus = "ok" | "error" | "timeout" | "interrupted" | "died";

export interface ExecutorHooks {
  onCellStart?(cell: CodeCell, position: number, total: number): void;
  onCellComplete?(cell: CodeCell, position: number, total: number, status: CellStatus, seconds: number): void;
  /** Every iopub message of the running cell, e.g. to echo its streams on the terminal. */
  onIOPub?(message: KernelMessage.IIOPubMessage): void;
}

export interface ExecutorOptions {
  /** Per-cell limit; the cell is interrupted when it runs longer. */
  timeoutMs?: number;
  /** Keep going after a failing cell (a cell tagged `raises-exception` may always fail). */
  allowErrors: boolean;
  /** How long an interrupted cell may take to answer before the kernel is given up on. */
  interruptGraceMs?: number;
  /** Aborted on Ctrl-C: the running cell is interrupted and no further cell runs. */
  signal?: AbortSignal;
  hooks?: ExecutorHooks;
}

export interface RunOutcome {
  status: CellStatus;
  /** Index in notebook.cells of the cell that stopped the run. */
  failedCell?: number;
  /** Its place among the code cells that run, as the progress lines count them ("3/6"). */
  failedPosition?: string;
  error?: { ename: string; evalue: string };
  cellsRun: number;
}

const RAISES_TAG = "raises-exception";

function errorOutput(ename: string, evalue: string): Output {
  return { output_type: "error", ename, evalue, traceback: [`${ename}: ${evalue}`] };
}

/** nbclient's shape of a run: one policy-driven loop over the code cells with a few hooks. */
export async function executeNotebook(notebook: Notebook, kernel: KernelHandle, options: ExecutorOptions): Promise<RunOutcome> {
  const code = notebook.cells.map((cell, index) => ({ cell, index })).filter((c): c is { cell: CodeCell; index: number } => c.cell.cell_type === "code");
  // Stale outputs from an earlier run would be indistinguishable from this run's (papermill does the same).
  for (const { cell } of code) {
    cell.outputs = [];
    cell.execution_count = null;
    delete cell.metadata.execution;
  }
  notebook.metadata.language_info = { ...(kernel.info.language_info as unknown as Record<string, unknown>) };
  const collector = new OutputCollector();
  const runnable = code.filter(({ cell }) => text(cell.source).trim() !== "");
  let cellsRun = 0;
  for (const [position, { cell, index }] of runnable.entries()) {
    if (options.signal?.aborted) return { status: "interrupted", failedCell: index, failedPosition: `${position + 1}/${runnable.length}`, cellsRun, error: { ename: "KeyboardInterrupt", evalue: "Interrupted before this cell." } };
    options.hooks?.onCellStart?.(cell, position, runnable.length);
    const started = Date.now();
    collector.begin(cell);
    const execution: Record<string, string> = {};
    const status = await runCell(cell, kernel, collector, execution, options);
    cell.metadata.execution = execution;
    cellsRun++;
    options.hooks?.onCellComplete?.(cell, position, runnable.length, status, (Date.now() - started) / 1000);
    if (status === "ok") continue;
    const failure = [...cell.outputs].reverse().find((o) => o.output_type === "error");
    const error = failure?.output_type === "error" ? { ename: failure.ename, evalue: failure.evalue } : undefined;
    if (status === "error" && (options.allowErrors || tagsOf(cell).includes(RAISES_TAG))) continue;
    return { status, failedCell: index, failedPosition: `${position + 1}/${runnable.length}`, error, cellsRun };
  }
  return { status: "ok", cellsRun };
}

async function runCell(cell: CodeCell, kernel: KernelHandle, collector: OutputCollector, execution: Record<string, string>, options: ExecutorOptions): Promise<CellStatus> {
  // A training step can take many seconds on a busy CPU before the interrupt is seen.
  const grace = options.interruptGraceMs ?? 30_000;
  const reply = kernel
    .execute(text(cell.source), (message) => {
      if (message.header.msg_type === "execute_input") execution["iopub.execute_input"] = new Date().toISOString();
      collector.handle(message);
      options.hooks?.onIOPub?.(message);
    })
    .then(
      (content) => ({ kind: "reply" as const, content }),
      (error: Error) => ({ kind: "died" as const, error }),
    );
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<"timeout" | "interrupted">((resolve) => {
    if (options.timeoutMs) timer = setTimeout(() => resolve("timeout"), options.timeoutMs);
    onAbort = () => resolve("interrupted");
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    let first = await Promise.race([reply, stop]);
    let stopped: "timeout" | "interrupted" | undefined;
    if (first === "timeout" || first === "interrupted") {
      stopped = first;
      await kernel.interrupt().catch(() => undefined);
      const late = await Promise.race([reply, new Promise<undefined>((r) => setTimeout(() => r(undefined), grace))]);
      if (!late) {
        // Whatever the kernel sends while it is being shut down must not land after this error.
        collector.detach();
        collector.append(errorOutput(stopped === "timeout" ? "CellTimeoutError" : "KeyboardInterrupt", `The kernel did not answer an interrupt within ${grace / 1000} s.`));
        return stopped;
      }
      first = late;
    }
    execution["shell.execute_reply"] = new Date().toISOString();
    if (first.kind === "died") {
      const message = first.error instanceof KernelDiedError ? first.error.message : `Lost the kernel: ${first.error.message}`;
      collector.append(errorOutput("DeadKernelError", message));
      return "died";
    }
    cell.execution_count = first.content.execution_count ?? cell.execution_count;
    if (stopped === "timeout") {
      collector.append(errorOutput("CellTimeoutError", `The cell ran longer than ${(options.timeoutMs ?? 0) / 1000} s and was interrupted; raise --timeout or give it smaller parameters.`));
      return "timeout";
    }
    if (stopped === "interrupted") {
      if (!cell.outputs.some((o) => o.output_type === "error")) collector.append(errorOutput("KeyboardInterrupt", "Interrupted."));
      return "interrupted";
    }
    if (first.content.status === "ok") return "ok";
    // A kernel may answer with an error reply without publishing the error itself.
    if (!cell.outputs.some((o) => o.output_type === "error")) {
      const c = first.content as Partial<KernelMessage.IReplyErrorContent>;
      collector.append({ output_type: "error", ename: c.ename ?? "Error", evalue: c.evalue ?? "", traceback: c.traceback ?? [] });
    }
    return "error";
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener("abort", onAbort);
  }
}
