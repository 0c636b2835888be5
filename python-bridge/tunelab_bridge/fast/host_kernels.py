"""The native host kernels (csrc/host_kernels.cpp): built with g++ into the tunelab cache
(native_build.py), checked on this CPU (kernels_check.py), loaded with ctypes.

Setup builds and checks it (`python -m tunelab_bridge.fast --build`); a bridge that finds it
missing builds it on first use, which takes a few seconds.

No CPU-specific flag is passed to the compiler: the library picks its AVX-512 or AVX2 path at
run time and otherwise runs portable loops, so a cache shared between machines stays correct;
and every path this CPU offers runs on small inputs in a forked child, compared with NumPy,
before the bridge loads the library, so a path that cannot run here is never taken.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..native_build import SETUP_HINT, BuildError, build_shared, library_path as _library_path

SOURCE = Path(__file__).with_name("csrc") / "host_kernels.cpp"
COMPILER = "g++"
FLAGS = ("-O3", "-shared", "-fPIC", "-std=c++17", "-pthread")
ABI_VERSION = 3  # tunelab_host_kernels_abi() of the source this module was written against
# The kernels' paths, best first, and the `cap` argument of the C ABI that allows at most each.
PATHS = ("avx512", "avx2", "portable")
_CAP = {"avx512": 0, "avx2": 2, "portable": 1}
# Caps the path below what the CPU has: "avx2" or "portable" (tests and benchmarks run the lower
# paths on one machine; a user can rule out a path suspected of a fault).
PATH_ENV = "TUNELAB_HOST_KERNELS_PATH"

_lock = threading.Lock()
_loaded: Optional[Tuple[Optional[ctypes.CDLL], str]] = None
# The best path that passed this CPU's check (None until the library is loaded).
_checked_best: Optional[str] = None


def library_path() -> Path:
    return _library_path("host-kernels", SOURCE.read_text(encoding="utf-8"), COMPILER, FLAGS)


def build() -> Path:
    """The library for the current source, compiled now unless it already is."""
    return build_shared("host-kernels", SOURCE.read_text(encoding="utf-8"), ".cpp", COMPILER, FLAGS, what="the host kernels")


def _bind(lib: ctypes.CDLL) -> None:
    f32 = ctypes.POINTER(ctypes.c_float)
    i32 = ctypes.POINTER(ctypes.c_int32)
    c_int = ctypes.c_int
    lib.tunelab_host_kernels_abi.argtypes = []
    lib.tunelab_host_kernels_abi.restype = c_int
    lib.tunelab_fused_cross_entropy_path.argtypes = [c_int, c_int]
    lib.tunelab_fused_cross_entropy_path.restype = ctypes.c_char_p
    lib.tunelab_pack_head.argtypes = [f32, c_int, c_int, f32]
    lib.tunelab_pack_head.restype = None
    lib.tunelab_fused_cross_entropy.argtypes = [f32, i32, c_int, c_int, f32, f32, c_int, f32, f32, c_int, c_int, c_int]
    lib.tunelab_fused_cross_entropy.restype = c_int
    lib.tunelab_linear_path.argtypes = [c_int, c_int]
    lib.tunelab_linear_path.restype = ctypes.c_char_p
    lib.tunelab_linear_forward.argtypes = [f32, c_int, c_int, f32, c_int, f32, c_int, c_int]
    lib.tunelab_linear_forward.restype = c_int
    lib.tunelab_linear_backward.argtypes = [f32, c_int, c_int, f32, c_int, f32, c_int, c_int]
    lib.tunelab_linear_backward.restype = c_int


def load() -> Tuple[Optional[ctypes.CDLL], str]:
    """(library, "") or (None, one sentence saying why it is unavailable and what to do).
    Builds the library on first use; the answer is kept for the life of the process."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def prepare() -> None:
    """At bridge start, before threads exist: check and load a library that setup already built
    (a missing one is built on first use instead, keeping g++'s seconds out of the start)."""
    if sys.platform.startswith("linux") and library_path().is_file():
        load()


def _load() -> Tuple[Optional[ctypes.CDLL], str]:
    global _checked_best
    if not sys.platform.startswith("linux"):
        return None, "the host kernels are built for Linux only"
    try:
        path = build()
    except BuildError as error:
        return None, str(error)
    except OSError as error:
        return None, f"the host kernels could not be built ({error}); {SETUP_HINT}"
    from .kernels_check import checked_paths

    try:
        checks = checked_paths(path)
    except RuntimeError as error:
        return None, str(error)
    passed = [p for p in PATHS if p in checks and checks[p] is None]
    if not passed:
        why = "; ".join(f"{p}: {reason}" for p, reason in checks.items())
        return None, f"the host kernels failed their check on this CPU ({why}); %tune uses MLX for those parts"
    _checked_best = passed[0]
    try:
        lib = ctypes.CDLL(str(path))
        _bind(lib)
    except (OSError, AttributeError) as error:
        return None, f"the host kernels library {path} could not be loaded ({error}); delete it and run npm run setup"
    if lib.tunelab_host_kernels_abi() != ABI_VERSION:
        return None, f"the host kernels library {path} does not match this tunelab; delete it and run npm run setup"
    return lib, ""


def path_cap(path: Optional[str] = None) -> int:
    """The C ABI's `cap` for the highest path allowed: `path` ("avx512", "avx2", "portable"),
    or by default PATH_ENV's value (none: the best the CPU has), never above the best path that
    passed this CPU's check. ValueError for an unknown name."""
    wanted = path if path is not None else (os.environ.get(PATH_ENV, "") or "avx512")
    if wanted not in _CAP:
        raise ValueError(f"{PATH_ENV} must be one of {', '.join(PATHS)}, got {wanted!r}")
    if _checked_best is not None and PATHS.index(wanted) < PATHS.index(_checked_best):
        wanted = _checked_best
    return _CAP[wanted]


def checks() -> Dict[str, Optional[str]]:
    """This CPU's check of each path ({path: None if it passed, else why}); empty before load()."""
    from .kernels_check import checked_paths

    try:
        return checked_paths(library_path()) if _loaded is not None and _loaded[0] is not None else {}
    except RuntimeError:
        return {}


def capped_by_environment() -> Optional[str]:
    """PATH_ENV's value where it lowers the path ("avx2" or "portable"), else None."""
    value = os.environ.get(PATH_ENV, "")
    return value if value in ("avx2", "portable") else None
