import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT, TOOLS_VENV } from "../paths.js";
import { aptInstall, runCommand, stampMatches, writeStamp, type SetupStep } from "./step.js";

const REQUIREMENTS = join(PACKAGE_ROOT, "test", "requirements-tools.txt");
const STAMP = join(TOOLS_VENV, ".tunelab-stamp");
export const CHROMIUM = process.env.TUNELAB_CHROMIUM ?? "/usr/bin/chromium";
export const QEMU_X86_64 = "/usr/bin/qemu-x86_64";

/** Jupyter's own clients (conformance suite, nbclient, JupyterLab, Jupyter Server) for the tests. */
const jupyterTools: SetupStep = {
  name: "test tools (Jupyter clients)",
  testOnly: true,
  async done() {
    return stampMatches(STAMP, readFileSync(REQUIREMENTS, "utf8"));
  },
  async run(log) {
    if (!existsSync(join(TOOLS_VENV, "bin", "python"))) await runCommand("python3", ["-m", "venv", TOOLS_VENV], { log });
    await runCommand(join(TOOLS_VENV, "bin", "python"), ["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", REQUIREMENTS], { log });
    writeStamp(STAMP, readFileSync(REQUIREMENTS, "utf8"));
  },
};

/** Debian's Chromium, driven headless by playwright-core in the JupyterLab end-to-end test. */
const chromium: SetupStep = {
  name: "test tools (Chromium)",
  testOnly: true,
  async done() {
    return existsSync(CHROMIUM);
  },
  async run(log) {
    await aptInstall(["chromium", "fonts-dejavu-core"], log);
  },
};

/**
 * QEMU's user-mode emulator: the CPU-matrix tests run the bridge and the native addon as a
 * Haswell (AVX2, no AVX-512) and a Nehalem (SSE4.2, no AVX) would, whatever CPU runs the tests.
 */
const qemu: SetupStep = {
  name: "test tools (qemu-user)",
  testOnly: true,
  async done() {
    return process.platform !== "linux" || process.arch !== "x64" || existsSync(QEMU_X86_64);
  },
  async run(log) {
    await aptInstall(["qemu-user"], log);
  },
};

export function testToolSteps(): SetupStep[] {
  return [jupyterTools, chromium, qemu];
}
