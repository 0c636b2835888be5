import { Worker } from "node:worker_threads";

/**
 * A kernel whose client died (a killed Jupyter server, a crashed test run) must not live on as an
 * orphan that keeps a runaway cell spinning. Like ipykernel, when `JPY_PARENT_PID` names the
 * process that started us, we leave once it is gone. The check runs on its own thread because a
 * synchronous cell can hold the main thread forever: it asks for a clean SIGTERM shutdown first
 * (which also stops the bridge and the ANE worker) and kills the process if that never happens.
 */
const WATCHER = `
const { workerData } = require("node:worker_threads");
const { parentPid, pollMs, graceMs } = workerData;
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === "EPERM"; } };
const timer = setInterval(() => {
  if (alive(parentPid) && process.ppid === parentPid) return;
  clearInterval(timer);
  process.kill(process.pid, "SIGTERM");
  setTimeout(() => process.kill(process.pid, "SIGKILL"), graceMs);
}, pollMs);
`;

export function exitWhenParentDies(env: NodeJS.ProcessEnv = process.env, pollMs = 1000, graceMs = 10_000): Worker | undefined {
  const parentPid = Number(env.JPY_PARENT_PID);
  // Only a parent that is really ours: a launcher that exec'd us or double-forked leaves a stale pid.
  if (!Number.isInteger(parentPid) || parentPid <= 1 || process.ppid !== parentPid) return undefined;
  const worker = new Worker(WATCHER, { eval: true, workerData: { parentPid, pollMs, graceMs } });
  worker.unref();
  return worker;
}
