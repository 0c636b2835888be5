import { UsageError } from "../errors.js";
import type { DisplayOutput } from "../display/mime.js";
import { completeMagic, magicLineAt } from "./complete.js";
import { helpOutput } from "./help.js";
import { MAGICS } from "./index.js";
import { parseArgs, parseCell, parseHead } from "./parse.js";
import type { CellSegment, FlagMap, MagicContext, MagicOutcome, MagicRunner, MagicSpec } from "./schema.js";
import { closest, kebab, quote } from "./words.js";

type MagicSegment = Exclude<CellSegment, { kind: "code" }>;

/** The magics of one kernel: parses magic lines against their declarations and runs them. */
export class MagicRegistry implements MagicRunner {
  private readonly byName = new Map<string, MagicSpec<FlagMap>>();

  constructor(specs: readonly MagicSpec<FlagMap>[]) {
    for (const spec of specs) {
      if (!/^[A-Za-z_][\w.-]*$/.test(spec.name)) throw new Error(`magic name ${quote(spec.name)} must be a word`);
      if (this.byName.has(spec.name)) throw new Error(`magic %${spec.name} is declared twice`);
      if (!spec.forms.line && !spec.forms.cell) throw new Error(`magic %${spec.name} allows neither the line nor the cell form`);
      const kebabs = new Set<string>();
      for (const key of Object.keys(spec.flags)) {
        if (!/^[a-z][A-Za-z0-9]*$/.test(key)) throw new Error(`flag ${key} of %${spec.name} must be camelCase`);
        if (kebabs.has(kebab(key))) throw new Error(`flag --${kebab(key)} of %${spec.name} is declared twice`);
        kebabs.add(kebab(key));
      }
      this.byName.set(spec.name, spec);
    }
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  specs(): MagicSpec<FlagMap>[] {
    return this.names().map((n) => this.byName.get(n)!);
  }

  get(name: string): MagicSpec<FlagMap> | undefined {
    return this.byName.get(name);
  }

  parseCell(code: string): CellSegment[] {
    return parseCell(code);
  }

  /** Finds the magic a line names, or throws the sentence that says what is wrong with it. */
  resolve(line: string, segmentKind: MagicSegment["kind"]): { spec: MagicSpec<FlagMap>; help: boolean; rest: string; label: string } {
    const head = parseHead(line);
    const percent = head.form === "cell" ? "%%" : "%";
    const spec = this.byName.get(head.name);
    if (!spec) {
      const near = closest(head.name, this.names());
      throw new UsageError(
        near ? `unknown magic ${percent}${head.name}; did you mean ${percent}${near}?` : `unknown magic ${percent}${head.name}; run %lsmagic to list the magics.`,
      );
    }
    const label = `${percent}${spec.name}`;
    if (!head.help) {
      if (head.form === "cell" && segmentKind === "line-magic") {
        throw new UsageError(`${label} must be the first line of the cell; a cell magic takes the whole cell as its body.`);
      }
      if (head.form === "cell" && !spec.forms.cell) throw new UsageError(`%${spec.name} is a line magic, not a cell magic; write %${spec.name} with a single %.`);
      if (head.form === "line" && !spec.forms.line) throw new UsageError(`%%${spec.name} is a cell magic, not a line magic; put %%${spec.name} on the first line of the cell.`);
    }
    return { spec, help: head.help, rest: head.rest, label };
  }

  async run(segment: MagicSegment, ctx: MagicContext): Promise<MagicOutcome> {
    const line = segment.kind === "cell-magic" ? segment.header : segment.line;
    const { spec, help, rest, label } = this.resolve(line, segment.kind);
    if (help) {
      ctx.io.display(helpOutput(spec));
      return { value: undefined, showsResult: false, name: spec.name };
    }
    const body = segment.kind === "cell-magic" ? segment.body : undefined;
    const { args, text, help: helpAsked } = parseArgs(spec, rest, { label, bodyGiven: body !== undefined && body.trim() !== "" });
    if (helpAsked) {
      ctx.io.display(helpOutput(spec));
      return { value: undefined, showsResult: false, name: spec.name };
    }
    const value = await spec.run({ args, text, body }, { ...ctx, magics: this.specs() });
    return { value, showsResult: spec.showsResult === true, name: spec.name };
  }

  complete(code: string, cursor: number): { matches: string[]; cursorStart: number; cursorEnd: number } | null {
    return completeMagic(this.specs(), code, cursor);
  }

  inspect(code: string, cursor: number): DisplayOutput | null {
    const found = magicLineAt(code, cursor);
    if (!found) return null;
    const name = /^%%?([\w.-]+)/.exec(found.line.slice(found.indent))?.[1];
    const spec = name === undefined ? undefined : this.byName.get(name);
    return spec ? helpOutput(spec) : null;
  }
}

/** The kernel's magics: every family listed in kernel/magics/index.ts. */
export function createDefaultRegistry(): MagicRunner {
  return new MagicRegistry(MAGICS);
}
