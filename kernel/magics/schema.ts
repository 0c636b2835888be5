import type { CellIO } from "../session/cell-io.js";
import type { Services } from "../session/services.js";

/**
 * One declaration per magic drives parsing, `%name?` help, completion of flags and usage errors
 * (IPython's magic_arguments habit). A flag's property name is camelCase; on the command line it
 * is kebab-case: `batchSize` is `--batch-size`, `noPrefixCache` is `--no-prefix-cache`.
 */
interface FlagCommon {
  help: string;
  /** Placeholder shown in help, e.g. FILE, N, RATE. */
  metavar?: string;
}

export type Flag<T> =
  | (FlagCommon & { kind: "string"; default?: T; choices?: readonly string[] })
  | (FlagCommon & { kind: "int" | "number"; default?: T; min?: number; max?: number; exclusiveMin?: boolean })
  | (FlagCommon & { kind: "boolean"; default?: T })
  | (FlagCommon & { kind: "list"; of: "string" | "int" | "number"; default?: T; min?: number; max?: number; maxItems?: number })
  | (FlagCommon & { kind: "repeated"; default?: T });

/** Carries the parsed type of a flag; never read at run time. */
export type Typed<T> = Flag<T> & { readonly __type?: T };

export const flag = {
  string<D extends string | undefined = undefined>(o: FlagCommon & { default?: D; choices?: readonly string[] }): Typed<D extends string ? string : string | undefined> {
    return { kind: "string", ...o } as Typed<D extends string ? string : string | undefined>;
  },
  choice<C extends string>(choices: readonly C[], o: FlagCommon & { default: C }): Typed<C> {
    return { kind: "string", choices, ...o } as Typed<C>;
  },
  int<D extends number | undefined = undefined>(o: FlagCommon & { default?: D; min?: number; max?: number }): Typed<D extends number ? number : number | undefined> {
    return { kind: "int", ...o } as Typed<D extends number ? number : number | undefined>;
  },
  number<D extends number | undefined = undefined>(o: FlagCommon & { default?: D; min?: number; max?: number; exclusiveMin?: boolean }): Typed<D extends number ? number : number | undefined> {
    return { kind: "number", ...o } as Typed<D extends number ? number : number | undefined>;
  },
  boolean(o: FlagCommon): Typed<boolean> {
    return { kind: "boolean", default: false, ...o } as Typed<boolean>;
  },
  /** Comma-separated values: `--keys q_proj,v_proj`, `--depths 32,64`. */
  list<K extends "string" | "int" | "number">(of: K, o: FlagCommon & { default?: Array<K extends "string" ? string : number>; min?: number; max?: number; maxItems?: number }): Typed<Array<K extends "string" ? string : number>> {
    return { kind: "list", of, ...o } as unknown as Typed<Array<K extends "string" ? string : number>>;
  },
  /** A flag given several times: `--eval "Who are you?" --eval "What is 2+2?"`. */
  repeated(o: FlagCommon): Typed<string[]> {
    return { kind: "repeated", default: [], ...o } as Typed<string[]>;
  },
};

export type FlagMap = Record<string, Typed<unknown>>;
export type ArgsOf<F extends FlagMap> = { [K in keyof F]: F[K] extends Typed<infer T> ? T : never };

/** What a magic's `run` receives. */
export interface MagicContext {
  io: CellIO;
  services: Services;
  /** The notebook's working directory (runs/, data files are relative to it). */
  cwd: string;
  /** Runs TypeScript in the notebook's scope (used by %time). Resolves to the last expression's value. */
  evaluate(code: string): Promise<unknown>;
  /** The last error a cell raised (for %tb). */
  lastError?(): import("../errors.js").ErrorRecord | undefined;
  /** Every magic the runner knows (set by the registry for %lsmagic). */
  magics?: readonly MagicSpec<FlagMap>[];
}

export interface MagicInvocation<F extends FlagMap> {
  args: ArgsOf<F>;
  /** The line's free text after the flags (e.g. the prompt of `%generate Who are you?`). */
  text: string;
  /** The cell body below a `%%name` line; undefined for a line magic. */
  body: string | undefined;
}

export interface MagicSpec<F extends FlagMap = FlagMap> {
  name: string;
  /** One line, shown by %lsmagic. */
  summary: string;
  /** Longer help, shown by %name?. */
  description?: string;
  /** How the magic may be used: `%name` (line), `%%name` (cell) or both. */
  forms: { line: boolean; cell: boolean };
  flags: F;
  /** The free text after the flags, when the magic takes one. */
  text?: { name: string; help: string; required?: boolean };
  /** What the body of `%%name` holds. */
  body?: { help: string };
  examples?: string[];
  /** When true the returned value becomes the cell's execute_result (like `%time expr`). */
  showsResult?: boolean;
  run(invocation: MagicInvocation<F>, ctx: MagicContext): Promise<unknown>;
}

export function defineMagic<F extends FlagMap>(spec: MagicSpec<F>): MagicSpec<F> {
  return spec;
}

/** A cell split into what runs as TypeScript and what runs as magics, in order. */
export type CellSegment =
  | { kind: "code"; code: string; startLine: number }
  | { kind: "line-magic"; line: string; startLine: number }
  | { kind: "cell-magic"; header: string; body: string; startLine: number };

export interface MagicOutcome {
  value: unknown;
  /** The value becomes the cell's execute_result (see MagicSpec.showsResult). */
  showsResult: boolean;
  /** The magic's name, under which the session keeps the result for TypeScript (`tunelab.results`). */
  name: string;
}

/** What the session needs from the magic system (implemented by kernel/magics/registry.ts). */
export interface MagicRunner {
  /** Splits a cell: a first line `%%name` makes the whole cell a cell magic; `%name` lines are line magics; the rest is code. */
  parseCell(code: string): CellSegment[];
  /** Parses and runs one magic segment; throws UsageError for bad input (including `%name?` help, which displays and returns). */
  run(segment: Exclude<CellSegment, { kind: "code" }>, ctx: MagicContext): Promise<MagicOutcome>;
  /** Completion of magic names and flags; null when the cursor is not in a magic line. */
  complete(code: string, cursor: number): { matches: string[]; cursorStart: number; cursorEnd: number } | null;
  /** Help for the magic under the cursor; null when the cursor is not in a magic line. */
  inspect(code: string, cursor: number): import("../display/mime.js").DisplayOutput | null;
  names(): string[];
}
