import { UsageError } from "./errors.js";
import { exitWhenParentDies } from "./parent-watch.js";
import type { MagicRunner } from "./magics/schema.js";
import { readConnectionFile } from "./protocol/connection.js";
import { KernelSockets } from "./protocol/sockets.js";
import { Kernel } from "./session/kernel.js";
import { captureProcessStreams, kernelLog } from "./session/streams.js";
import { TypeScriptCells } from "./typescript/executor.js";

async function loadRunner(): Promise<MagicRunner> {
  const { createDefaultRegistry } = await import("./magics/registry.js");
  return createDefaultRegistry();
}

/** `tunelab kernel <connection-file>`: serves one notebook until a shutdown_request or SIGTERM. */
export async function run(argv: string[]): Promise<number> {
  const file = argv.find((a) => !a.startsWith("-"));
  if (!file) throw new UsageError("usage: tunelab kernel <connection-file> (Jupyter passes {connection_file})");
  const info = readConnectionFile(file);
  captureProcessStreams();
  const sockets = new KernelSockets(info, { log: kernelLog });
  await sockets.bind();

  return new Promise<number>((resolve) => {
    const finish = (code: number) => {
      resolve(code);
      // Open handles a cell left behind (timers, servers) must not keep a shut-down kernel alive.
      setTimeout(() => process.exit(code), 100);
    };
    const kernel: Kernel = new Kernel({
      sockets,
      cells: new TypeScriptCells(process.cwd()),
      loadRunner,
      cwd: process.cwd(),
      log: kernelLog,
      onShutdown: () => void kernel.dispose().finally(() => finish(0)),
    });
    // A signal interrupts the cell, never the kernel (a synchronous loop is stopped by the vm itself).
    process.on("SIGINT", () => kernel.interrupt());
    process.on("SIGTERM", () => void kernel.dispose().finally(() => finish(0)));
    // Errors thrown later by a cell's callbacks belong to the notebook, not to the kernel.
    process.on("uncaughtException", (error) => process.stderr.write(`Uncaught ${error.stack ?? String(error)}\n`));
    process.on("unhandledRejection", (reason) => process.stderr.write(`Unhandled promise rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}\n`));
    exitWhenParentDies();
    kernel.start();
  });
}
