"""Which BLAS the bridge loads: every candidate checked on this CPU, the fastest that passed.

The checks are cached in `<cache>/blas-checks.json` under a key made of the CPU (its model and
instruction sets, cpu.fingerprint), each candidate's file identity, the thread count and the
TUNELAB_BLAS setting: a cache shared between machines never carries a choice to a CPU it was not
checked on, and a changed library is checked again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .. import cpu
from ..cache import cache_dir
from ..files import atomic_write_json, read_json
from ..isolated import run_isolated
from . import candidates as found
from .candidates import Candidate
from .check import check

CHECKS_FILE = "blas-checks.json"
CHECK_FORMAT = 2  # bump when check.py's meaning changes: older entries are checked again
_KEPT_ENTRIES = 16
# Generous: an emulated CPU (qemu-user) takes a few seconds to import MLX and multiply.
_CHECK_TIMEOUT_S = 300.0


@dataclass
class Checked:
    candidate: Candidate
    ok: bool
    reason: str = ""
    measured: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self, chosen: bool) -> Dict[str, Any]:
        return {
            "name": self.candidate.name,
            "origin": self.candidate.origin,
            "path": self.candidate.path,
            "available": not self.candidate.unavailable,
            "ok": self.ok,
            "chosen": chosen,
            "reason": self.reason or None,
            "gflops": self.measured.get("gflops"),
            "size": self.measured.get("size"),
            "config": self.measured.get("config"),
            "core": self.measured.get("core"),
        }


@dataclass
class Choice:
    chosen: Checked
    checked: List[Checked]
    setting: str
    cached: bool
    checked_at: str
    warning: Optional[str] = None


def setting() -> str:
    return os.environ.get(found.ENV_CHOICE, "").strip() or "auto"


# OpenBLAS settings that change what a check measures.
_SETTINGS = ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")


def _key(candidates: List[Candidate], current: str) -> str:
    settings = [os.environ.get(name, "") for name in _SETTINGS]
    return cpu.fingerprint([CHECK_FORMAT, current, settings, [c.identity() for c in candidates]])


def _check_all(candidates: List[Candidate]) -> List[Checked]:
    results = []
    for candidate in candidates:
        if candidate.unavailable:
            results.append(Checked(candidate, False, candidate.unavailable))
            continue
        outcome = run_isolated(lambda: check(candidate), timeout_s=_CHECK_TIMEOUT_S)
        results.append(Checked(candidate, outcome.ok, outcome.reason, outcome.value or {}))
    return results


def _stored(entry: Dict[str, Any], candidates: List[Candidate]) -> Optional[List[Checked]]:
    by_name = {c.name: c for c in candidates}
    results = []
    for item in entry.get("results", []):
        candidate = by_name.get(item.get("name"))
        if candidate is None:
            return None
        results.append(Checked(candidate, bool(item.get("ok")), item.get("reason") or "", item.get("measured") or {}))
    return results if len(results) == len(candidates) else None


def _remember(key: str, results: List[Checked], checked_at: str) -> None:
    path = cache_dir() / CHECKS_FILE
    known = read_json(path)
    known = known if isinstance(known, dict) else {}
    known[key] = {
        "checked_at": checked_at,
        "cpu": cpu.identity().summary,
        "results": [{"name": r.candidate.name, "ok": r.ok, "reason": r.reason, "measured": r.measured} for r in results],
    }
    newest = sorted(known.items(), key=lambda kv: str(kv[1].get("checked_at", "")), reverse=True)[:_KEPT_ENTRIES]
    try:
        atomic_write_json(path, dict(newest))
    except OSError:
        pass  # an unwritable cache only costs a check at the next start


def _pick(results: List[Checked], current: str) -> tuple:
    """(the chosen result, a warning or None) under the TUNELAB_BLAS setting."""
    reference = next(r for r in results if r.candidate.name == found.REFERENCE)
    passed = [r for r in results if r.ok and r.candidate.name != found.REFERENCE]
    fastest = max(passed, key=lambda r: r.measured.get("gflops") or 0.0, default=None)
    if current == found.REFERENCE:
        return reference, None
    if current != "auto":
        wanted = next((r for r in results if r.candidate.name == current or (r.candidate.name == found.CUSTOM and current not in found.NAMES)), None)
        if wanted is None:
            return fastest or reference, f"{found.ENV_CHOICE}={current} names no BLAS tunelab knows; use one of {', '.join(found.NAMES)}, a library's path, or unset it."
        if wanted.ok:
            return wanted, None
        instead = fastest or reference
        return instead, f"{found.ENV_CHOICE}={current} failed its check on this CPU ({wanted.reason}); using {instead.candidate.name} instead."
    return fastest or reference, None


def choose(recheck: bool = False) -> Choice:
    """The BLAS for this process, checked on this CPU (from the cache unless `recheck`)."""
    current = setting()
    candidates = [found.reference()] if current == found.REFERENCE else found.all_candidates(current)
    key = _key(candidates, current)
    entry = None if recheck else (read_json(cache_dir() / CHECKS_FILE) or {}).get(key)
    results = _stored(entry, candidates) if isinstance(entry, dict) else None
    cached = results is not None
    checked_at = str(entry.get("checked_at")) if cached and isinstance(entry, dict) else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if results is None:
        results = _check_all(candidates)
        _remember(key, results, checked_at)
    chosen, warning = _pick(results, current)
    return Choice(chosen, results, current, cached, checked_at, warning)


def is_cached() -> bool:
    """True when this CPU's checks are already in the cache (set-up skips its step then)."""
    current = setting()
    candidates = [found.reference()] if current == found.REFERENCE else found.all_candidates(current)
    entry = (read_json(cache_dir() / CHECKS_FILE) or {}).get(_key(candidates, current))
    return isinstance(entry, dict) and _stored(entry, candidates) is not None
