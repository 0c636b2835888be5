import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { UsageError, UserFacingError } from "../errors.js";
import type { DataSource } from "../bridge/types.js";

/**
 * The kernel reads training data itself and sends its text, so a bridge on another machine needs
 * no shared file system. The bridge validates rows and names `source` and line in its errors.
 */
export interface TuneData {
  train: DataSource;
  valid: DataSource | null;
}

function source(path: string, cwd: string): DataSource {
  const shown = relative(cwd, path);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UserFacingError(`Could not read ${shown} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); check its permissions.`);
  }
  if (text.trim() === "") throw new UsageError(`${shown} is empty; put one JSON example per line in it.`);
  return { source: shown.startsWith("..") ? path : shown, text };
}

/** `--data FILE.jsonl` (a sibling NAME-valid.jsonl gives validation loss) or `--data DIR` with train.jsonl [+ valid.jsonl]. */
export function readDataFlag(data: string, cwd: string): TuneData {
  const path = resolve(cwd, data);
  if (!existsSync(path)) {
    throw new UsageError(`--data: there is no file or directory at ${path}; give a .jsonl file or a directory holding train.jsonl.`);
  }
  if (statSync(path).isDirectory()) {
    const train = join(path, "train.jsonl");
    if (!existsSync(train)) throw new UsageError(`--data: ${path} holds no train.jsonl; put the training examples there, one JSON object per line.`);
    const valid = join(path, "valid.jsonl");
    return { train: source(train, cwd), valid: existsSync(valid) ? source(valid, cwd) : null };
  }
  if (!path.endsWith(".jsonl")) {
    throw new UsageError(`--data must be a .jsonl file (one JSON example per line) or a directory with train.jsonl, got ${basename(path)}.`);
  }
  const valid = join(dirname(path), `${basename(path, ".jsonl")}-valid.jsonl`);
  return { train: source(path, cwd), valid: existsSync(valid) ? source(valid, cwd) : null };
}

/** The body of `%%tune`: JSONL examples typed into the cell. */
export function readCellBody(body: string): TuneData {
  if (body.trim() === "") throw new UsageError("The %%tune cell has no examples; put one JSON example per line below the %%tune line, or use %tune --data FILE.");
  return { train: { source: "cell", text: body }, valid: null };
}

/** A flag naming one file the bridge needs the text of (e.g. `--hosts`, an mlx.launch hostfile). */
export function readFileFlag(flag: string, value: string | undefined, cwd: string): DataSource | null {
  if (value === undefined) return null;
  const path = resolve(cwd, value);
  if (!existsSync(path) || statSync(path).isDirectory()) throw new UsageError(`--${flag}: there is no file at ${path}; give the path of the file.`);
  return source(path, cwd);
}
