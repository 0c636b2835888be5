import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { NATIVE_ADDON, PACKAGE_ROOT } from "../paths.js";
import { aptInstall, runCommand, stampMatches, writeStamp, type SetupStep } from "./step.js";

const NATIVE_DIR = join(PACKAGE_ROOT, "native");
const STAMP = join(NATIVE_DIR, "build", ".tunelab-stamp");

const CBLAS_HEADERS = ["/usr/include/x86_64-linux-gnu/cblas.h", "/usr/include/aarch64-linux-gnu/cblas.h", "/usr/include/cblas.h", "/usr/include/openblas/cblas.h"];
const OPENBLAS_LIBS = ["/usr/lib/x86_64-linux-gnu/libopenblas.so", "/usr/lib/aarch64-linux-gnu/libopenblas.so", "/usr/lib/libopenblas.so", "/usr/lib64/libopenblas.so"];

/** The cpu backend's BLAS: Accelerate ships with macOS; on Linux, OpenBLAS's development files. */
const openblas: SetupStep = {
  name: "OpenBLAS (cpu backend)",
  async done() {
    if (process.platform === "darwin") return true;
    return CBLAS_HEADERS.some(existsSync) && OPENBLAS_LIBS.some(existsSync);
  },
  async run(log) {
    await aptInstall(["libopenblas-dev"], log);
  },
};

/** npm ships node-gyp; a pinned dependency would do the same where npm's copy is missing. */
function nodeGyp(): string {
  const bundled = join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js");
  if (existsSync(bundled)) return bundled;
  try {
    return createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js");
  } catch {
    throw new Error("node-gyp was not found (neither npm's bundled copy nor a node-gyp package); install it with: npm install -g node-gyp");
  }
}

/** Everything the addon is built from, so an edited source rebuilds it and nothing else does. */
function sourcesDigest(): string {
  const files = ["binding.gyp", ...readdirSync(join(NATIVE_DIR, "src")).sort().map((f) => join("src", f))];
  return [process.version, process.platform, process.arch, ...files.map((f) => `${f}\n${readFileSync(join(NATIVE_DIR, f), "utf8")}`)].join("\n--\n");
}

const addon: SetupStep = {
  name: "native addon (ANE + cpu backends)",
  async done() {
    return existsSync(NATIVE_ADDON) && stampMatches(STAMP, sourcesDigest());
  },
  async run(log) {
    const args = [nodeGyp(), "rebuild"];
    // Node's headers are installed locally on these machines; node-gyp would otherwise download them.
    const localHeaders = join(dirname(process.execPath), "..", "include", "node", "node_api.h");
    if (existsSync(localHeaders)) args.push(`--nodedir=${join(dirname(process.execPath), "..")}`);
    await runCommand(process.execPath, args, { log, cwd: NATIVE_DIR });
    if (!existsSync(NATIVE_ADDON)) throw new Error(`node-gyp finished but ${NATIVE_ADDON} is missing.`);
    writeStamp(STAMP, sourcesDigest());
  },
};

export function nativeSteps(): SetupStep[] {
  return [openblas, addon];
}
