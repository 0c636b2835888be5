import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { UsageError } from "../../kernel/errors.js";
import { bridgeEnv } from "../../kernel/bridge/local.js";
import { GENERATE_FLAGS, SYNC_COST_FLAGS, TUNE_FLAGS, generateParams, syncCostParams, tuneParams } from "../../kernel/magics/options.generated.js";
import { parseArgs } from "../../kernel/magics/parse.js";
import type { Flag, FlagMap, MagicSpec } from "../../kernel/magics/schema.js";
import { BRIDGE_PYTHON, BRIDGE_SOURCE } from "../../kernel/paths.js";
import { existsSync } from "node:fs";

/**
 * %tune's and %generate's options are declared once (python-bridge/tunelab_bridge/options.py);
 * the kernel's flags and wire types are written from it. These tests fail when the two sides
 * disagree on any option's name, default or limit: the written files must be what the
 * declaration writes now, and both sides must accept and refuse the same values.
 */

const bridge = existsSync(BRIDGE_PYTHON);
const MAGICS = { tune: TUNE_FLAGS, generate: GENERATE_FLAGS, sync_cost: SYNC_COST_FLAGS } as const;

function spec(name: string, flags: FlagMap): MagicSpec<FlagMap> {
  return { name, summary: "", forms: { line: true, cell: true }, flags, async run() {} };
}

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** What the bridge's options.parse says of each params object: "ok" and the parsed options, or its error. */
function bridgeParse(method: string, cases: Record<string, unknown>[]): Array<{ ok: boolean; value?: Record<string, unknown>; error?: string }> {
  const program = `
import json, sys
from tunelab_bridge.options import MAGICS, as_wire, parse
from tunelab_bridge.protocol import BridgeError
out = []
for params in json.loads(sys.stdin.read()):
    try:
        out.append({"ok": True, "value": as_wire(parse(MAGICS[${JSON.stringify(method)}], ${JSON.stringify(method)}, params))})
    except BridgeError as error:
        out.append({"ok": False, "error": error.message})
print(json.dumps(out))`;
  const stdout = execFileSync(BRIDGE_PYTHON, ["-c", program], { input: JSON.stringify(cases), env: bridgeEnv(), encoding: "utf8" });
  return JSON.parse(stdout) as Array<{ ok: boolean; value?: Record<string, unknown>; error?: string }>;
}

/** Values just outside and at each limit of a numeric flag. */
function limitCases(flag: Flag<unknown>): Array<{ value: number; ok: boolean }> {
  if (flag.kind !== "int" && flag.kind !== "number") return [];
  const cases: Array<{ value: number; ok: boolean }> = [];
  const step = flag.kind === "int" ? 1 : 1e-3;
  if (flag.min !== undefined) {
    cases.push({ value: flag.min - step, ok: false });
    cases.push({ value: flag.min, ok: !flag.exclusiveMin });
    cases.push({ value: flag.min + step, ok: flag.max === undefined || flag.min + step <= flag.max });
  }
  if (flag.max !== undefined) cases.push({ value: flag.max, ok: true }, { value: flag.max + step, ok: false });
  return cases;
}

describe.skipIf(!bridge)("one declaration of each magic's options", () => {
  it("the kernel's written flags and wire types are what options.py writes now", () => {
    const check = spawnSync(BRIDGE_PYTHON, ["-m", "tunelab_bridge.options_codegen", "--check"], { cwd: BRIDGE_SOURCE, env: bridgeEnv(), encoding: "utf8" });
    expect(check.status, check.stderr).toBe(0);
  });

  for (const [magic, flags] of Object.entries(MAGICS)) {
    const parse = (line: string) => parseArgs(spec(magic, flags), line).args;
    const model = (v: string | undefined) => v ?? null;
    const wire = (args: Record<string, unknown>): Record<string, unknown> =>
      magic === "tune"
        ? tuneParams(args as never, { model, data: () => ({ train: { source: "cell", text: "{}" }, valid: null }), file: () => null })
        : magic === "generate"
          ? generateParams(args as never, { model })
          : syncCostParams(args as never, { model });

    it(`%${magic}: both sides take the same defaults`, () => {
      const kernel = wire(parse(""));
      const [fromBridge] = bridgeParse(magic, [{}]);
      for (const [field, value] of Object.entries(kernel)) {
        // null on the wire asks for the bridge's default (flags without one); data is read by the kernel.
        if (value !== null && field !== "data") expect(fromBridge!.value![field], field).toEqual(value);
      }
    });

    it(`%${magic}: both sides accept and refuse the same values at every limit`, () => {
      const defaults = wire(parse(""));
      const rows: Array<{ key: string; field: string; value: number; ok: boolean }> = [];
      for (const [key, flag] of Object.entries(flags as FlagMap)) {
        const cases = limitCases(flag as Flag<unknown>);
        // The wire field this flag sets: the one that changes when the flag is given a good value.
        const probe = cases.find((c) => c.ok && c.value !== (flag as { default?: unknown }).default);
        if (!probe) continue;
        const changed = wire(parse(`--${kebab(key)} ${probe.value}`));
        const field = Object.keys(changed).find((f) => JSON.stringify(changed[f]) !== JSON.stringify(defaults[f]));
        expect(field, `--${kebab(key)} sets no wire field`).toBeDefined();
        for (const c of cases) rows.push({ key, field: field!, ...c });
      }
      expect(rows.length).toBeGreaterThan(magic === "tune" ? 20 : 4);
      const answers = bridgeParse(magic, rows.map((r) => ({ [r.field]: r.value })));
      rows.forEach((row, i) => {
        let kernelOk = true;
        try {
          parse(`--${kebab(row.key)} ${row.value}`);
        } catch (error) {
          expect(error).toBeInstanceOf(UsageError);
          kernelOk = false;
        }
        const label = `--${kebab(row.key)} ${row.value}: kernel ${kernelOk}, bridge ${answers[i]!.ok} (${answers[i]!.error ?? ""})`;
        expect(kernelOk, label).toBe(row.ok);
        expect(answers[i]!.ok, label).toBe(row.ok);
      });
    });
  }
});
