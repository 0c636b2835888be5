import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { PACKAGE_ROOT } from "../../kernel/paths.js";

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [join(dir, e.name)] : []));
}

/**
 * The ANE worker and the kernel are separate Node processes and run from dist/; tests run from
 * sources. This compiles the package when any kernel source is newer than its build.
 */
export function ensureWorkerBuilt(): void {
  const stale = sources(join(PACKAGE_ROOT, "kernel")).some((file) => {
    const built = join(PACKAGE_ROOT, "dist", relative(PACKAGE_ROOT, file).replace(/\.ts$/, ".js"));
    return !existsSync(built) || statSync(built).mtimeMs < statSync(file).mtimeMs;
  });
  if (!stale) return;
  try {
    execFileSync(process.execPath, [join(PACKAGE_ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", PACKAGE_ROOT], { stdio: "pipe" });
  } catch {
    // Type errors elsewhere in the package still emit JavaScript; only a missing worker is fatal.
  }
  if (!existsSync(join(PACKAGE_ROOT, "dist", "kernel", "ane", "worker.js"))) throw new Error("could not build dist/kernel/ane/worker.js");
}
