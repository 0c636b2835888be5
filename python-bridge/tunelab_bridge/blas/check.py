"""One candidate BLAS checked on this CPU, in a forked child (isolated.py): load it the way the
bridge would, multiply and factorise through MLX, compare with NumPy in float64, and time sgemm.

A library built for instructions this CPU lacks kills only the child (SIGILL); a library that
loads but computes wrong numbers, or that MLX does not bind, fails with a sentence. Only a
library that passed is ever loaded into the bridge itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from typing import Any, Dict, Optional

from .candidates import Candidate

# Results of products this size are exact to a few float32 ulps; a relative error above this
# means wrong numbers, not rounding.
_TOLERANCE = 1e-5
_LARGEST = 1024  # the issue's and the notes' figure: sgemm 1024 x 1024
_LONG_ENOUGH_S = 0.02  # an emulated CPU is ~500x slower: stop growing the size once a product takes this


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p), ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def sgemm_provider() -> Optional[str]:
    """The file that answers `cblas_sgemm` in the global scope (the one libmlx binds first), or,
    where none does, the BLAS libmlx brought itself (read from this process's mappings)."""
    try:
        symbol = ctypes.CDLL(None).cblas_sgemm
        info = _DlInfo()
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if libc.dladdr(ctypes.cast(symbol, ctypes.c_void_p), ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(info.dli_fname.decode())
    except AttributeError:
        pass
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/mlx_cpu.libs/libblas" in path:
                    return path
    except OSError:
        pass
    return None


def openblas_settings(path: Optional[str]) -> Dict[str, Any]:
    """config (openblas_get_config), core (the kernels it picked) and threads of an OpenBLAS;
    empty for a BLAS without these entry points."""
    if not path:
        return {}
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return {}
    found: Dict[str, Any] = {}
    for key, function, restype in (("config", "openblas_get_config", ctypes.c_char_p), ("core", "openblas_get_corename", ctypes.c_char_p), ("threads", "openblas_get_num_threads", ctypes.c_int)):
        try:
            entry = getattr(lib, function)
        except AttributeError:
            continue
        entry.restype = restype
        value = entry()
        found[key] = value.decode().strip() if isinstance(value, bytes) else value
    return found


def _relative_error(got, want) -> float:
    import numpy as np

    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def _check_products() -> None:
    import mlx.core as mx
    import numpy as np

    rng = np.random.default_rng(20261203)
    # Odd sizes, and a transposed operand: MLX passes both layouts to sgemm.
    for m, k, n, transposed in ((173, 97, 131, False), (64, 200, 33, True)):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        left = mx.array(np.ascontiguousarray(a.T)).T if transposed else mx.array(a)
        got = np.array(mx.matmul(left, mx.array(b), stream=mx.cpu))
        error = _relative_error(got.astype(np.float64), a.astype(np.float64) @ b.astype(np.float64))
        if not error < _TOLERANCE:
            raise ArithmeticError(f"a {m}x{k} by {k}x{n} product is wrong (relative error {error:.2e})")
    # LAPACK through the same library: an LU-based inverse of a well-conditioned matrix.
    matrix = rng.standard_normal((24, 24)).astype(np.float32) + 8 * np.eye(24, dtype=np.float32)
    got = np.array(mx.linalg.inv(mx.array(matrix), stream=mx.cpu))
    error = _relative_error(got.astype(np.float64), np.linalg.inv(matrix.astype(np.float64)))
    if not error < 1e-4:
        raise ArithmeticError(f"a 24x24 inverse (LAPACK) is wrong (relative error {error:.2e})")


def _sgemm_rate() -> Dict[str, float]:
    """GFLOP/s of a square product through MLX: the largest size up to 1024 that is quick here."""
    import mlx.core as mx

    n = 128
    while True:
        a = mx.random.normal((n, n), key=mx.random.key(0), stream=mx.cpu)
        b = mx.random.normal((n, n), key=mx.random.key(1), stream=mx.cpu)
        mx.eval(a, b, mx.matmul(a, b, stream=mx.cpu))  # warm-up: thread pool, page faults
        best = float("inf")
        for _ in range(5):  # the best of five: a busy neighbour slows some, never speeds one up
            started = time.perf_counter()
            mx.eval(mx.matmul(a, b, stream=mx.cpu))
            best = min(best, time.perf_counter() - started)
        if n >= _LARGEST or best >= _LONG_ENOUGH_S:
            return {"gflops": round(2 * n**3 / best / 1e9, 1), "size": n}
        n *= 2


def check(candidate: Candidate) -> Dict[str, Any]:
    """Runs in the child. Raises with a sentence where the candidate must not be used."""
    if candidate.path:
        ctypes.CDLL(candidate.path, mode=ctypes.RTLD_GLOBAL)
    import mlx.core as mx  # noqa: F401 - binds its BLAS symbols now, against the library above

    bound = sgemm_provider()
    if candidate.path and (bound is None or os.path.realpath(bound) != os.path.realpath(candidate.path)):
        raise LookupError(f"MLX still binds cblas_sgemm from {bound or 'another library'}, not from this one")
    _check_products()
    return {**_sgemm_rate(), **openblas_settings(candidate.path or bound), "bound": bound}
