import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isAlive } from "../../kernel/runner/processes.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "tunelab.js");

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return check();
}

describe("a kernel whose client died", () => {
  it("exits by itself when the JPY_PARENT_PID process is gone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tunelab-orphan-"));
    const connection = join(dir, "kernel.json");
    writeFileSync(
      connection,
      JSON.stringify({ transport: "ipc", ip: join(dir, "k"), key: "k", signature_scheme: "hmac-sha256", shell_port: 1, iopub_port: 2, stdin_port: 3, control_port: 4, hb_port: 5 }),
    );
    // The parent starts the kernel the way Jupyter clients do, reports its pid, then dies without cleaning up.
    const parentScript = `
      const { spawn } = require("node:child_process");
      const kernel = spawn(process.execPath, [${JSON.stringify(BIN)}, "kernel", ${JSON.stringify(connection)}], {
        env: { ...process.env, JPY_PARENT_PID: String(process.pid) }, stdio: "ignore", detached: true,
      });
      kernel.unref();
      console.log(kernel.pid);
      setTimeout(() => process.exit(0), 3000);
    `;
    const parent = spawn(process.execPath, ["-e", parentScript], { stdio: ["ignore", "pipe", "inherit"] });
    const kernelPid = await new Promise<number>((resolve) => parent.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
    expect(isAlive(kernelPid)).toBe(true);
    await new Promise((r) => parent.once("exit", r));
    // Still alive right after its parent left is fine; it must be gone within the poll + shutdown time.
    const gone = await waitFor(() => !isAlive(kernelPid), 20_000);
    if (!gone) process.kill(kernelPid, "SIGKILL");
    expect(gone).toBe(true);
  }, 60_000);
});
