import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/**
 * The kernel's helpers (the MLX bridge, the ANE worker) run in their own process groups, so killing
 * the kernel's group does not reach them. Once the kernel has exited they are re-parented and can no
 * longer be found from it, so the tree is read before the kernel is asked to leave.
 */
export function descendants(root: number): number[] {
  const parentOf = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parentOf) {
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid)!.push(pid);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function processTable(): Map<number, number> {
  const table = new Map<number, number>();
  if (process.platform === "linux") {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        // The command name may hold spaces and parentheses: the fields after the last ')' are fixed.
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        table.set(Number(entry), ppid);
      } catch {
        // The process exited while the table was read.
      }
    }
    return table;
  }
  const out = execFileSync("ps", ["-A", "-o", "pid=,ppid="], { encoding: "utf8" });
  for (const line of out.split("\n")) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    if (pid > 0) table.set(pid, ppid);
  }
  return table;
}

/** A zombie (exited, not yet reaped by whoever adopted it) counts as gone. */
export function isAlive(pid: number): boolean {
  if (process.platform === "linux") {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Signals a process's whole group when it leads one, else the process alone; never throws. */
export function signalTree(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
    return;
  } catch {
    // Not a group leader (or already gone): fall through to the process itself.
  }
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

export async function waitForExit(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!pids.some(isAlive)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !pids.some(isAlive);
}
