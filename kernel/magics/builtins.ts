import { performance } from "node:perf_hooks";
import { UsageError, UserFacingError } from "../errors.js";
import { text, withDisplay } from "../display/bundle.js";
import { formatDuration } from "../display/format.js";
import { table } from "../display/table.js";
import { defineMagic, type FlagMap, type MagicSpec } from "./schema.js";
import { quote } from "./words.js";

/** One row of %lsmagic: the forms a magic can be written in and what it does. */
export interface MagicListing {
  name: string;
  line: string | null;
  cell: string | null;
  summary: string;
}

export const lsmagic = defineMagic({
  name: "lsmagic",
  summary: "List every magic with its line (%) and cell (%%) forms.",
  forms: { line: true, cell: false },
  flags: {},
  showsResult: true,
  examples: ["%lsmagic"],
  async run(_invocation, ctx) {
    const listing: MagicListing[] = [...(ctx.magics ?? [])]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((spec) => ({
        name: spec.name,
        line: spec.forms.line ? `%${spec.name}` : null,
        cell: spec.forms.cell ? `%%${spec.name}` : null,
        summary: spec.summary,
      }));
    return withDisplay(listing, () =>
      table(
        listing.map((m) => ({ line: m.line ?? "", cell: m.cell ?? "", summary: m.summary })),
        { caption: `${listing.length} magics; %name? shows the help of one`, maxRows: Infinity },
      ),
    );
  },
});

export const tb = defineMagic({
  name: "tb",
  summary: "Show the last error's folded detail (for an internal bridge error: its Python traceback).",
  description:
    "A cell's error shows one sentence; where there is more (an unexpected error inside the MLX bridge carries its Python " +
    "traceback), it is folded and %tb shows it. From TypeScript: tunelab.lastError.detail.",
  forms: { line: true, cell: false },
  flags: {},
  examples: ["%tb"],
  async run(_invocation, ctx) {
    const last = ctx.lastError?.();
    if (!last) throw new UsageError("No cell has raised an error yet; %tb shows the details of the last one.");
    ctx.io.display(text(`${last.ename}: ${last.message}\n\n${last.detail ?? "(this error has no further detail)"}`));
    return last;
  },
});

export const time = defineMagic({
  name: "time",
  summary: "Time a TypeScript expression (%time) or a whole cell (%%time) and show its value.",
  description: "Prints the wall-clock time and the CPU time of the kernel process; the value of the expression (or of the cell's last expression) becomes the cell's result.",
  forms: { line: true, cell: true },
  flags: {},
  text: { name: "EXPRESSION", help: "TypeScript to run, kept verbatim." },
  body: { help: "TypeScript to run and time." },
  showsResult: true,
  examples: ["%time [...Array(1e6).keys()].reduce((a, b) => a + b, 0)", "%%time\nconst r = await fetchRows();\nr.length"],
  async run({ text, body }, ctx) {
    if (body !== undefined && text.trim() !== "") {
      throw new UsageError(`%%time times the cell body, got ${quote(text)} on the %%time line; move that code below it.`);
    }
    const code = body ?? text;
    if (code.trim() === "") {
      throw new UsageError(body === undefined ? "%time needs an expression to time, e.g. %time 1 + 1." : "%%time needs code to time in the cell body below the %%time line.");
    }
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const value = await ctx.evaluate(code);
    const wall = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const user = cpu.user / 1e6;
    const system = cpu.system / 1e6;
    ctx.io.stdout(`CPU times: user ${formatDuration(user)}, sys ${formatDuration(system)}, total ${formatDuration(user + system)}\nWall time: ${formatDuration(wall)}\n`);
    return value;
  },
});

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SECRET = /KEY|TOKEN|SECRET|PASS|CREDENTIAL/i;

function unquote(value: string): string {
  const m = /^(["'])([\s\S]*)\1$/.exec(value);
  return m ? m[2]! : value;
}

export const env = defineMagic({
  name: "env",
  summary: "Show environment variables, or set one for this kernel and the processes it starts later.",
  description:
    "With no argument, lists the variables (values whose names look secret are hidden). With NAME, shows its value. With NAME=VALUE or NAME VALUE, sets it in the kernel's environment, so the MLX bridge and other children started afterwards inherit it.",
  forms: { line: true, cell: false },
  flags: {},
  text: { name: "NAME[=VALUE]", help: "the variable to show, or NAME=VALUE to set it." },
  showsResult: true,
  examples: ["%env", "%env HOME", "%env MLX_SEED=0", "%env TUNELAB_RUNS ./runs"],
  async run({ text }, ctx) {
    const trimmed = text.trim();
    if (trimmed === "") {
      const shown: Record<string, string> = {};
      for (const name of Object.keys(process.env).sort()) shown[name] = SECRET.test(name) ? "<hidden>" : process.env[name] ?? "";
      return withDisplay(shown, () =>
        table(
          Object.entries(shown).map(([name, value]) => ({ name, value })),
          { maxRows: Infinity },
        ),
      );
    }
    const m = /^([^\s=]+)(?:\s*=\s*|\s+)([\s\S]*)$/.exec(trimmed);
    const name = m ? m[1]! : trimmed;
    if (!ENV_NAME.test(name)) {
      throw new UsageError(`${quote(name)} is not an environment variable name; use letters, digits and underscores, e.g. %env MY_VAR=1.`);
    }
    if (!m) {
      const value = process.env[name];
      if (value === undefined) throw new UserFacingError(`environment variable ${name} is not set; set it with %env ${name}=VALUE.`);
      return value;
    }
    const value = unquote(m[2]!);
    process.env[name] = value;
    ctx.io.stdout(`env: ${name}=${value}\n`);
    return undefined;
  },
});

export const builtinMagics: MagicSpec<FlagMap>[] = [lsmagic, time, env, tb];
