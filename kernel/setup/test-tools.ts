import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT, TOOLS_VENV } from "../paths.js";
import { runCommand, stampMatches, writeStamp, type SetupStep } from "./step.js";

const REQUIREMENTS = join(PACKAGE_ROOT, "test", "requirements-tools.txt");
const STAMP = join(TOOLS_VENV, ".tunelab-stamp");
export const CHROMIUM = process.env.TUNELAB_CHROMIUM ?? "/usr/bin/chromium";

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
    if (process.getuid?.() !== 0) {
      throw new Error(`Chromium is missing; install it with: sudo apt-get install -y chromium`);
    }
    await runCommand("apt-get", ["update", "-q"], { log });
    await runCommand("apt-get", ["install", "-y", "-q", "--no-install-recommends", "chromium", "fonts-dejavu-core"], {
      log,
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  },
};

export function testToolSteps(): SetupStep[] {
  return [jupyterTools, chromium];
}
