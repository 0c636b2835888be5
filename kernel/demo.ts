import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { UserFacingError } from "./errors.js";
import { PACKAGE_ROOT } from "./paths.js";

const NOTEBOOK = join(PACKAGE_ROOT, "notebooks", "identity.ipynb");
const OUT = join(PACKAGE_ROOT, "out");

/**
 * `tunelab demo`: the flagship notebook, run headless on the embedded default model exactly as a
 * person would run it (`tunelab run`), leaving the executed notebook and its HTML report in out/.
 */
export async function run(argv: string[]): Promise<number> {
  if (!existsSync(NOTEBOOK)) throw new UserFacingError(`The demo notebook ${NOTEBOOK} is missing; restore it from the repository.`);
  mkdirSync(OUT, { recursive: true });
  const output = join(OUT, "identity.ipynb");
  const html = join(OUT, "identity.html");
  console.log(`tunelab demo: running ${NOTEBOOK} on the embedded default model (about a minute on a CPU)`);
  const { run: runNotebook } = await import("./runner/cli.js");
  const code = await runNotebook([NOTEBOOK, "--kernel", "tunelab", "-o", output, "--html", html, ...argv]);
  if (code === 0) {
    console.log(`tunelab demo: the executed notebook is ${output}`);
    console.log(`tunelab demo: the report is ${html} (open it in a browser; it needs no network)`);
  }
  return code;
}
