/**
 * Everything a cell writes to process.stdout / process.stderr (console.log included, which writes
 * through them) goes to the cell being executed, or to the last one after it finished, as
 * ipykernel does for late output. The kernel's own diagnostics use `kernelLog`, never a cell.
 */
export type StreamSink = (name: "stdout" | "stderr", text: string) => void;

const originalStdout = process.stdout.write.bind(process.stdout);
const originalStderr = process.stderr.write.bind(process.stderr);
let sink: StreamSink | undefined;
let installed = false;

export function kernelLog(line: string): void {
  originalStderr(`${line}\n`);
}

/** Where output goes when no cell has run yet: the kernel process's own streams. */
export function writeToProcess(name: "stdout" | "stderr", text: string): void {
  (name === "stdout" ? originalStdout : originalStderr)(text);
}

export function setStreamSink(next: StreamSink | undefined): void {
  sink = next;
}

type WriteCallback = (error?: Error | null) => void;

function redirect(name: "stdout" | "stderr", original: typeof originalStdout): typeof process.stdout.write {
  return ((chunk: string | Uint8Array, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback): boolean => {
    if (!sink) return original(chunk, encoding as BufferEncoding, callback);
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString(typeof encoding === "string" ? encoding : "utf8");
    sink(name, text);
    const done = typeof encoding === "function" ? encoding : callback;
    if (done) queueMicrotask(() => done(null));
    return true;
  }) as typeof process.stdout.write;
}

export function captureProcessStreams(): void {
  if (installed) return;
  installed = true;
  process.stdout.write = redirect("stdout", originalStdout);
  process.stderr.write = redirect("stderr", originalStderr);
}
