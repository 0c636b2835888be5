"""The native host kernels (csrc/host_kernels.cpp): built with g++ into the tunelab cache, loaded
with ctypes.

The library's file name carries a hash of its source and of the compiler command, so an edited
source (or a tunelab upgrade) builds a new library beside the old one and nothing stale is ever
loaded. Setup builds it (`python -m tunelab_bridge.fast.host_kernels --build`); a bridge that
finds it missing builds it on first use, which takes a few seconds.

No CPU-specific flag is passed to the compiler: the library picks its AVX-512 or AVX2 path at
run time and otherwise runs portable loops, so a cache shared between machines stays correct.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional, Tuple

from ..cache import cache_dir

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
SETUP_HINT = "install g++ and run npm run setup"

_lock = threading.Lock()
_loaded: Optional[Tuple[Optional[ctypes.CDLL], str]] = None


class BuildError(RuntimeError):
    """The library could not be built; the message is one sentence saying why and what to do."""


def library_path() -> Path:
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update("\0".join((COMPILER, *FLAGS, platform.machine(), sys.platform)).encode())
    return cache_dir() / "host-kernels" / f"host_kernels-{digest.hexdigest()[:16]}.so"


def build() -> Path:
    """The library for the current source, compiled now unless it already is."""
    target = library_path()
    if target.is_file():
        return target
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise BuildError(f"the host kernels could not be built: {COMPILER} not found; {SETUP_HINT}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name, then renamed: a bridge starting beside this one either finds
    # no library (and builds its own) or a complete one.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"the host kernels could not be built: {COMPILER} failed ({last}); {SETUP_HINT}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


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


def _load() -> Tuple[Optional[ctypes.CDLL], str]:
    if not sys.platform.startswith("linux"):
        return None, "the host kernels are built for Linux only"
    try:
        path = build()
    except BuildError as error:
        return None, str(error)
    except OSError as error:
        return None, f"the host kernels could not be built ({error}); {SETUP_HINT}"
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
    or by default PATH_ENV's value (none: the best the CPU has). ValueError for an unknown name."""
    wanted = path if path is not None else (os.environ.get(PATH_ENV, "") or "avx512")
    if wanted not in _CAP:
        raise ValueError(f"{PATH_ENV} must be one of {', '.join(PATHS)}, got {wanted!r}")
    return _CAP[wanted]


def capped_by_environment() -> Optional[str]:
    """PATH_ENV's value where it lowers the path ("avx2" or "portable"), else None."""
    value = os.environ.get(PATH_ENV, "")
    return value if value in ("avx2", "portable") else None


def main(argv: list[str]) -> int:
    if argv != ["--build"]:
        print("usage: python -m tunelab_bridge.fast.host_kernels --build", file=sys.stderr)
        return 2
    try:
        print(build())
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
