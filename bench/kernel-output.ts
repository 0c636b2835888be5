import type { KernelMessage } from "@jupyterlab/services";

/** The text a person would read in an iopub message: a stream's text or an output's text/plain. */
export function textOf(message: KernelMessage.IIOPubMessage): string {
  const content = message.content as { data?: Record<string, unknown>; text?: string };
  return String(content.data?.["text/plain"] ?? content.text ?? "");
}
