import { parentPort, workerData } from "node:worker_threads";
import { Router } from "zeromq";

/**
 * The heartbeat echo runs on its own thread: clients give up on a kernel after about a second of
 * silence, and a cell may block the main thread far longer than that.
 */
const { url } = workerData as { url: string };
const socket = new Router({ linger: 0 });

async function serve(): Promise<void> {
  await socket.bind(url);
  parentPort?.postMessage({ bound: true });
  for await (const frames of socket) await socket.send(frames);
}

parentPort?.on("message", (message: { close?: boolean }) => {
  if (!message.close) return;
  socket.close();
  parentPort?.close();
});

serve().catch((error: Error) => {
  if (!socket.closed) parentPort?.postMessage({ error: error.message });
});
