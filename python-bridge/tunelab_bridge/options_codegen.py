"""Writes the kernel's side of options.py: the magics' flags and the wire's TypeScript types.

    python -m tunelab_bridge.options_codegen            # rewrite the two files
    python -m tunelab_bridge.options_codegen --check    # exit 1 (and say which) when they are stale

`npm run generate` runs the first; the test suite runs the second.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, List, Tuple

from .options import MAGICS, Spec, spec_of

ROOT = Path(__file__).resolve().parents[2]
FLAGS_FILE = ROOT / "kernel" / "magics" / "options.generated.ts"
PARAMS_FILE = ROOT / "kernel" / "bridge" / "params.generated.ts"
HEADER = "// Written by `npm run generate` from python-bridge/tunelab_bridge/options.py; edit that file, not this one.\n"


def _camel(flag: str) -> str:
    head, *rest = flag.split("-")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _pascal(magic: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in magic.split("_"))


def _ts(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def _flag_call(spec: Spec, default: Any) -> str:
    parts = [f"help: {_ts(spec.help)}"]
    # Booleans are false unless given, and repeated flags start empty: neither takes a default.
    if default is not None and spec.kind not in ("bool", "repeated", "model", "data", "file", "path"):
        parts.append(f"default: {_ts(default)}")
    if spec.minimum is not None:
        parts.append(f"min: {_ts(spec.minimum)}")
    if spec.maximum is not None:
        parts.append(f"max: {_ts(spec.maximum)}")
    if spec.exclusive:
        parts.append("exclusiveMin: true")
    if spec.metavar:
        parts.append(f"metavar: {_ts(spec.metavar)}")
    if spec.choices:
        parts.append(f"choices: {_ts(spec.choices)}")
    body = "{ " + ", ".join(parts) + " }"
    if spec.kind in ("string", "model", "data", "file", "path"):
        return f"flag.string({body})"
    if spec.kind == "int":
        return f"flag.int({body})"
    if spec.kind == "number":
        return f"flag.number({body})"
    if spec.kind == "bool":
        return f"flag.boolean({body})"
    if spec.kind == "list":
        return f"flag.list({_ts(spec.items)}, {body})"
    return f"flag.repeated({body})"


def _options(cls: Any) -> List[Tuple[dataclasses.Field, Spec]]:
    return [(f, spec_of(f)) for f in dataclasses.fields(cls)]


def _wire_value(spec: Spec, default: Any) -> str:
    """The TypeScript expression that turns the parsed flag into its wire field."""
    arg = f"args.{_camel(spec.flag)}"
    if spec.kind == "model":
        return f"resolve.model({arg})"
    if spec.kind == "data":
        return f"resolve.data({arg})"
    if spec.kind == "file":
        return f"resolve.file({arg}, {_ts(spec.flag)})"
    if spec.kind == "path":
        return f"resolve.path({arg})"
    if spec.negated:
        return f"!{arg}"
    if spec.kind in ("list", "repeated"):
        return f"[...{arg}]"
    # A flag without a default is undefined when not given: null on the wire, the bridge's default.
    return f"{arg} ?? null" if default is None else arg


def flags_file() -> str:
    lines = [
        HEADER,
        f'import type {{ FileText, {", ".join(sorted(_pascal(m) + "Params" for m in MAGICS))} }} from "../bridge/params.generated.js";',
        'import { flag, type ArgsOf } from "./schema.js";',
        "",
        "/** How a magic turns the flags whose values need the notebook into wire fields. */",
        "export interface WireResolvers<Data = never> {",
        "  /** A path is resolved against the notebook; anything else is a name for the bridge. */",
        "  model(value: string | undefined): string | null;",
        "  data(value: string | undefined): Data;",
        "  /** A file read by the kernel and sent as text, or null when the flag is not given. */",
        "  file(value: string | undefined, flag: string): FileText | null;",
        "  /** A path for the bridge to write to, resolved against the notebook, or null when not given. */",
        "  path(value: string | undefined): string | null;",
        "}",
        "",
    ]
    for magic, cls in MAGICS.items():
        upper = magic.upper()
        params = f"{_pascal(magic)}Params"
        options = _options(cls)
        lines.append(f"/** %{magic}'s flags: {cls.__name__} in python-bridge/tunelab_bridge/options.py. */")
        lines.append(f"export const {upper}_FLAGS = {{")
        for f, spec in options:
            if spec.flag:
                lines.append(f"  {_camel(spec.flag)}: {_flag_call(spec, f.default)},")
        lines.append("};")
        lines.append("")
        has_data = any(spec.kind == "data" for _, spec in options if spec.flag)
        kernel_set = [f.name for f, spec in options if not spec.flag]
        used = [k for k in ("model", "data", "file", "path") if any(spec.kind == k for _, spec in options if spec.flag)] or ["model"]
        generic = f'WireResolvers<{params}["data"]>' if has_data else "WireResolvers"
        resolvers = f"Pick<{generic}, {' | '.join(_ts(k) for k in used)}>"
        returned = f"{params[:-6]}FlagParams"
        omitted = f"Omit<{params}, {' | '.join(_ts(n) for n in kernel_set)}>" if kernel_set else params
        lines.append(f"/** What %{magic}'s flags put on the wire: every field they set, defaults applied. */")
        lines.append(f"export type {returned} = Required<{omitted}>;")
        lines.append("")
        others = f" ({', '.join(kernel_set)}: the magic's own business)" if kernel_set else ""
        lines.append(f"/** The wire fields %{magic}'s flags set{others}. */")
        lines.append(f"export function {_camel(magic.replace('_', '-'))}Params(args: ArgsOf<typeof {upper}_FLAGS>, resolve: {resolvers}): {returned} {{")
        lines.append("  return {")
        for f, spec in options:
            if spec.flag:
                lines.append(f"    {f.name}: {_wire_value(spec, f.default)},")
        lines.append("  };")
        lines.append("}")
        lines.append("")
    return "\n".join(lines)


def _ts_type(spec: Spec, default: Any) -> str:
    base = {
        "int": "number",
        "number": "number",
        "string": "string",
        "model": "string",
        "bool": "boolean",
        "list": "string[]",
        "repeated": "string[]",
        "data": "{ train: DataSource; valid: DataSource | null }",
        "file": "FileText",
        "path": "string",
    }[spec.kind]
    return f"{base} | null" if default is None and spec.kind != "data" else base


def params_file() -> str:
    from .fast.plan import KNOBS

    lines = [HEADER, 'import type { DataSource } from "./types.js";', ""]
    lines.append("/** A file the kernel read for the bridge: where it came from, and its text. */")
    lines.append("export type FileText = DataSource;")
    lines.append("")
    lines.append("/** The fast path's knobs as TuneResult.optimisations names them (FastOptions in python-bridge/tunelab_bridge/fast/plan.py). */")
    lines.append(f"export type OptimisationName = {' | '.join(_ts(k) for k in KNOBS)};")
    lines.append("")
    for magic, cls in MAGICS.items():
        name = f"{_pascal(magic)}Params"
        lines.append(f"/** The params of the bridge's `{magic}` method ({cls.__name__}); a field left out takes the bridge's default. */")
        lines.append(f"export interface {name} {{")
        for f, spec in _options(cls):
            help = f"whether --{spec.flag} is absent: {spec.help}" if spec.negated else spec.help
            lines.append(f"  /** {help}{'' if f.default is None or spec.kind == 'data' else f' (default {_ts(f.default)})'} */")
            required = spec.kind == "data" or (magic == "generate" and f.name == "prompt")
            lines.append(f"  {f.name}{'' if required else '?'}: {_ts_type(spec, f.default)};")
        lines.append("}")
        lines.append("")
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    wanted = {FLAGS_FILE: flags_file(), PARAMS_FILE: params_file()}
    if "--check" in argv:
        stale = [str(path.relative_to(ROOT)) for path, text in wanted.items() if not path.is_file() or path.read_text(encoding="utf-8") != text]
        if stale:
            print(f"{', '.join(stale)} differ from python-bridge/tunelab_bridge/options.py; run `npm run generate`.", file=sys.stderr)
            return 1
        return 0
    for path, text in wanted.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
