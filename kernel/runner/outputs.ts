import type { KernelMessage } from "@jupyterlab/services";
import { text, type CodeCell, type Output } from "./notebook.js";

/**
 * Turns iopub messages into a cell's nbformat outputs the way a notebook front end does:
 * streams of the same name are joined, `clear_output(wait)` waits for the next output, and
 * `update_display_data` replaces every output with that display id, in any cell run so far.
 */
export class OutputCollector {
  private readonly byDisplayId = new Map<string, Set<Output>>();
  private cell: CodeCell | undefined;
  private clearPending = false;
  private detached = false;

  begin(cell: CodeCell): void {
    this.cell = cell;
    this.clearPending = false;
    this.detached = false;
    cell.outputs = [];
    cell.execution_count = null;
  }

  /** Adds an output that did not come from the kernel (a timeout, a dead kernel). */
  append(output: Output): void {
    this.push(output);
  }

  /** Ignores the kernel's further messages; `append` still adds to the current cell. */
  detach(): void {
    this.detached = true;
  }

  handle(message: KernelMessage.IIOPubMessage): void {
    const cell = this.cell;
    if (!cell || this.detached) return;
    const content = message.content as Record<string, unknown>;
    switch (message.header.msg_type) {
      case "execute_input":
        cell.execution_count = (content.execution_count as number | undefined) ?? cell.execution_count;
        return;
      case "stream": {
        this.flushClear();
        const name = content.name === "stderr" ? "stderr" : "stdout";
        const last = cell.outputs[cell.outputs.length - 1];
        if (last?.output_type === "stream" && last.name === name) last.text = text(last.text) + String(content.text ?? "");
        else this.push({ output_type: "stream", name, text: String(content.text ?? "") });
        return;
      }
      case "display_data": {
        this.pushDisplay({ output_type: "display_data", data: bundle(content.data), metadata: bundle(content.metadata) }, content);
        return;
      }
      case "update_display_data": {
        const id = displayId(content);
        for (const output of (id && this.byDisplayId.get(id)) || []) {
          if (output.output_type === "display_data" || output.output_type === "execute_result") {
            output.data = bundle(content.data);
            output.metadata = bundle(content.metadata);
          }
        }
        return;
      }
      case "execute_result":
        this.pushDisplay(
          {
            output_type: "execute_result",
            data: bundle(content.data),
            metadata: bundle(content.metadata),
            execution_count: (content.execution_count as number | null | undefined) ?? cell.execution_count,
          },
          content,
        );
        return;
      case "error":
        this.push({
          output_type: "error",
          ename: String(content.ename ?? "Error"),
          evalue: String(content.evalue ?? ""),
          traceback: Array.isArray(content.traceback) ? content.traceback.map(String) : [],
        });
        return;
      case "clear_output":
        if (content.wait) this.clearPending = true;
        else this.clear();
        return;
      default:
        return;
    }
  }

  private pushDisplay(output: Output, content: Record<string, unknown>): void {
    this.push(output);
    const id = displayId(content);
    if (!id) return;
    if (!this.byDisplayId.has(id)) this.byDisplayId.set(id, new Set());
    this.byDisplayId.get(id)!.add(output);
  }

  private push(output: Output): void {
    this.flushClear();
    this.cell?.outputs.push(output);
  }

  private flushClear(): void {
    if (this.clearPending) this.clear();
  }

  private clear(): void {
    this.clearPending = false;
    if (!this.cell) return;
    for (const output of this.cell.outputs) for (const set of this.byDisplayId.values()) set.delete(output);
    this.cell.outputs = [];
  }
}

function bundle(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? { ...(value as Record<string, unknown>) } : {};
}

function displayId(content: Record<string, unknown>): string | undefined {
  const transient = content.transient as { display_id?: unknown } | undefined;
  return typeof transient?.display_id === "string" ? transient.display_id : undefined;
}
