"""`python -m tunelab_bridge.blas [--json] [--recheck] [--cached]`: the BLAS this CPU gets.

--recheck checks every candidate again (otherwise the cached checks for this CPU are used);
--cached only answers, by its exit code, whether this CPU's checks are cached (0) or not (1).
"""

from __future__ import annotations

import json
import sys

from . import activate, thread_settings
from .choice import is_cached


def _table(report: dict) -> str:
    lines = [
        f"CPU:   {report['cpu']['summary']}",
        f"BLAS:  {report['name']} ({report['library']}{', ' + report['build'] if report.get('build') else ''}"
        f"{', core ' + report['core'] if report.get('core') else ''}), {report.get('gflops')} GFLOP/s sgemm {report.get('size')}x{report.get('size')}",
        f"       {report['path'] or 'bundled with mlx-cpu'}",
    ]
    for c in report.get("candidates", []):
        mark = "*" if c["chosen"] else " "
        state = f"{c['gflops']} GFLOP/s" if c["ok"] else f"failed: {c['reason']}" if c["available"] else f"unavailable: {c['reason']}"
        lines.append(f"  {mark} {c['name']:<17} {state}  [{c['origin']}]")
    if report.get("warning"):
        lines.append(f"warning: {report['warning']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if "--cached" in argv:
        thread_settings()  # the key includes the thread count activate() would use
        return 0 if is_cached() else 1
    report = activate(recheck="--recheck" in argv)
    print(json.dumps(report) if "--json" in argv else _table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
