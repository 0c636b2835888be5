"""Each path of the host kernels (AVX-512, AVX2, portable) checked on this CPU before use.

The library picks its path at run time from what the CPU reports, so one build serves every
x86-64 CPU; this check makes sure that what the CPU reports and what the path executes agree
(a path that uses an instruction its test forgot kills the child with SIGILL, not the bridge),
and that its numbers match NumPy in float64. Each path runs in its own forked child
(isolated.py), and the results are cached per library file and CPU (cpu.fingerprint).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .. import cpu
from ..files import atomic_write_json, read_json
from ..isolated import run_isolated

CHECKS_FILE = "checks.json"
_TOLERANCE = 1e-5


def _pointer(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _relative_error(got, want) -> float:
    import numpy as np

    return float(np.linalg.norm(got.astype(np.float64) - want) / max(np.linalg.norm(want), 1e-30))


def _run_path(library: str, cap: int) -> str:
    """In the child: every entry point on small inputs through one path; its name, or raises."""
    import numpy as np

    from .host_kernels import _bind

    lib = ctypes.CDLL(library)
    _bind(lib)
    rng = np.random.default_rng(7)
    rows, inner, outer = 5, 48, 40  # widths that are multiples of 16 take the SIMD paths
    path = lib.tunelab_linear_path(inner, cap).decode()
    weight = rng.standard_normal((outer, inner), dtype=np.float32)
    x = rng.standard_normal((rows, inner), dtype=np.float32)
    packed = np.zeros(-(-outer // 16) * 16 * inner + 16, dtype=np.float32)
    lib.tunelab_pack_head(_pointer(weight), outer, inner, _pointer(packed))
    y = np.empty((rows, outer), dtype=np.float32)
    lib.tunelab_linear_forward(_pointer(x), rows, inner, _pointer(packed), outer, _pointer(y), 2, cap)
    if not _relative_error(y, x.astype(np.float64) @ weight.T.astype(np.float64)) < _TOLERANCE:
        raise ArithmeticError(f"the {path} forward product is wrong")
    dy = rng.standard_normal((rows, outer), dtype=np.float32)
    dx = np.empty((rows, inner), dtype=np.float32)
    lib.tunelab_linear_backward(_pointer(dy), rows, outer, _pointer(weight), inner, _pointer(dx), 2, cap)
    if not _relative_error(dx, dy.astype(np.float64) @ weight.astype(np.float64)) < _TOLERANCE:
        raise ArithmeticError(f"the {path} backward product is wrong")
    targets = rng.integers(0, outer, rows).astype(np.int32)
    ce = np.empty(rows, dtype=np.float32)
    grad = np.empty((rows, inner), dtype=np.float32)
    status = lib.tunelab_fused_cross_entropy(_pointer(x), targets.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), rows, inner, _pointer(weight), _pointer(packed), outer, _pointer(ce), _pointer(grad), 2, 16, cap)
    logits = x.astype(np.float64) @ weight.T.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    want = log_z - shifted[np.arange(rows), targets]
    if status != 0 or not _relative_error(ce, want) < 1e-4:
        raise ArithmeticError(f"the {path} fused cross-entropy is wrong")
    return path


def _distinct_paths(library: str) -> List[Tuple[str, int]]:
    """(path, cap) for each path this CPU offers, best first (computed in a child: even asking
    loads the library)."""
    from .host_kernels import _CAP

    def ask():
        lib = ctypes.CDLL(library)
        lib.tunelab_linear_path.restype = ctypes.c_char_p
        return [[lib.tunelab_linear_path(48, cap).decode(), cap] for cap in (_CAP["avx512"], _CAP["avx2"], _CAP["portable"])]

    outcome = run_isolated(ask, timeout_s=120)
    if not outcome.ok:
        raise RuntimeError(f"the host kernels library does not load on this CPU ({outcome.reason})")
    seen: Dict[str, int] = {}
    for path, cap in outcome.value:
        seen.setdefault(path, cap)
    return list(seen.items())


def is_checked(library: Path) -> bool:
    known = read_json(library.parent / CHECKS_FILE)
    return isinstance(known, dict) and isinstance(known.get(cpu.fingerprint(library.name)), dict)


def checked_paths(library: Path) -> Dict[str, Optional[str]]:
    """{path: None if it passed, else why not} for this CPU, from the cache or checked now.
    Must run before this process loads the library (each child loads it itself)."""
    store = library.parent / CHECKS_FILE
    key = cpu.fingerprint(library.name)
    known = read_json(store)
    known = known if isinstance(known, dict) else {}
    if isinstance(known.get(key), dict):
        return known[key]["paths"]
    results: Dict[str, Optional[str]] = {}
    for path, cap in _distinct_paths(str(library)):
        outcome = run_isolated(lambda: _run_path(str(library), cap), timeout_s=120)
        results[path] = None if outcome.ok else outcome.reason
    known[key] = {"library": library.name, "cpu": cpu.identity().summary, "paths": results}
    try:
        atomic_write_json(store, known)
    except OSError:
        pass  # re-checked next time
    return results
