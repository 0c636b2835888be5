import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, renameSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

/** One idempotent piece of `tunelab setup`. `done()` must be cheap: it runs on every `npm test`. */
export interface SetupStep {
  name: string;
  /** Only with `setup --test` (tools that tests and benchmarks need, not users). */
  testOnly?: boolean;
  done(): Promise<boolean>;
  run(log: (line: string) => void): Promise<void>;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command, streaming its output to the log with a prefix; rejects on a non-zero exit unless allowed. */
export function runCommand(
  command: string,
  args: string[],
  options: { log?: (line: string) => void; env?: NodeJS.ProcessEnv; cwd?: string; allowFailure?: boolean } = {},
): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      options.log?.(d.toString().trimEnd());
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      options.log?.(d.toString().trimEnd());
    });
    child.on("error", (error) => reject(new Error(`Could not start ${command}: ${error.message}`)));
    child.on("close", (code) => {
      const result = { code: code ?? 1, stdout, stderr };
      if (result.code !== 0 && !options.allowFailure) {
        reject(new Error(`${command} ${args.join(" ")} failed with exit code ${result.code}:\n${stderr.slice(-2000)}`));
      } else resolvePromise(result);
    });
  });
}

/** A stamp file records what a step installed (a hash of its inputs), so a re-run can skip it. */
export function stampMatches(path: string, inputs: string): boolean {
  return existsSync(path) && readFileSync(path, "utf8") === hashOf(inputs);
}

export function writeStamp(path: string, inputs: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, hashOf(inputs));
  renameSync(tmp, path);
}

function hashOf(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Installs Debian packages with apt-get (as root), updating the package lists once if the first
 * attempt fails (a fresh machine has none). Throws one sentence with the command to run by hand.
 */
export async function aptInstall(packages: string[], log: (line: string) => void): Promise<void> {
  const command = `sudo apt-get install -y ${packages.join(" ")}`;
  if (process.platform !== "linux" || !existsSync("/usr/bin/apt-get")) {
    throw new Error(`${packages.join(", ")} must be installed with your package manager (on Debian/Ubuntu: ${command}).`);
  }
  if (process.getuid?.() !== 0) throw new Error(`${packages.join(", ")} must be installed; run: ${command}`);
  const options = { log, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, allowFailure: true };
  const install = ["install", "-y", "-q", "--no-install-recommends", ...packages];
  let result = await runCommand("apt-get", install, options);
  if (result.code !== 0) {
    await runCommand("apt-get", ["update", "-q"], options);
    result = await runCommand("apt-get", install, options);
  }
  if (result.code !== 0) throw new Error(`apt-get could not install ${packages.join(", ")}; try: ${command}`);
}
