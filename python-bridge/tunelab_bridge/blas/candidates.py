"""The BLAS libraries MLX's CPU backend could multiply with on this machine.

The Linux `mlx-cpu` wheel bundles the netlib reference BLAS (a few GFLOP/s). libmlx binds
`cblas_sgemm` and its LAPACK routines through the global symbol scope, so a library loaded with
RTLD_GLOBAL before MLX wins over the bundled one. Which library is fastest, and which runs at all,
depends on the CPU: cmeel-openblas is built for AVX-512 (SKYLAKEX) only and dies with SIGILL
elsewhere, while Debian's OpenBLAS and scipy-openblas32 pick their kernels at run time
(DYNAMIC_ARCH). Every candidate is therefore checked on the CPU before it is used (check.py).
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import List, Optional

# TUNELAB_BLAS: unset or "auto" (the fastest library that passes), "reference" (the bundled one),
# a candidate's name, or the path of a library that exports cblas_sgemm.
ENV_CHOICE = "TUNELAB_BLAS"
REFERENCE = "reference"
CMEEL = "cmeel-openblas"
SYSTEM = "system-openblas"
SCIPY = "scipy-openblas32"
CUSTOM = "custom"
NAMES = (SYSTEM, SCIPY, CMEEL, REFERENCE)

# Where distributions put a threaded OpenBLAS. Debian/Ubuntu's pthread flavour first: the
# alternatives link `libopenblas.so.0` may point at the OpenMP or serial flavour instead.
_SYSTEM_PATHS = (
    "/usr/lib/{triplet}/openblas-pthread/libopenblas.so.0",
    "/usr/lib/{triplet}/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)


@dataclass(frozen=True)
class Candidate:
    name: str
    #: Where it comes from, for a person ("PyPI cmeel-openblas 0.3.31").
    origin: str
    #: The library to load with RTLD_GLOBAL; None for the bundled reference BLAS.
    path: Optional[str]
    #: The file that holds the code (for scipy-openblas32: its library behind the forwarder).
    code: Optional[str] = None
    #: Why it cannot be tried here ("" when it can).
    unavailable: str = ""

    def identity(self) -> list:
        """What the cached check of this candidate depends on: the code's file, size and age."""
        target = self.code or self.path
        if not target:
            return [self.name]
        try:
            stat = os.stat(target)
            return [self.name, os.path.realpath(target), stat.st_size, stat.st_mtime_ns]
        except OSError:
            return [self.name, target, None]


def _site_dirs() -> List[Path]:
    paths = sysconfig.get_paths()
    return [Path(p) for p in dict.fromkeys((paths["platlib"], paths["purelib"]))]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def reference() -> Candidate:
    return Candidate(REFERENCE, "netlib reference BLAS bundled with the mlx-cpu wheel", None)


def cmeel() -> Candidate:
    for site in _site_dirs():
        library = site / "cmeel.prefix" / "lib" / "libopenblas.so.0"
        if library.is_file():
            return Candidate(CMEEL, f"PyPI cmeel-openblas {_version('cmeel-openblas')}", str(library))
    return Candidate(CMEEL, "PyPI cmeel-openblas", None, unavailable="not installed in the bridge's environment")


def system() -> Candidate:
    triplet = sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"
    for pattern in _SYSTEM_PATHS:
        library = Path(pattern.format(triplet=triplet))
        if library.is_file():
            return Candidate(SYSTEM, f"the system's OpenBLAS ({library.parent})", str(library))
    return Candidate(SYSTEM, "the system's OpenBLAS", None, unavailable="not installed (Debian/Ubuntu: apt-get install libopenblas0-pthread)")


def scipy_openblas32() -> Candidate:
    """scipy-openblas32 prefixes every symbol (`scipy_cblas_sgemm`), so MLX cannot bind it
    directly; a small forwarding library with the plain names, built once, stands in front."""
    from .forwarder import ForwarderError, forwarding_library

    origin = f"PyPI scipy-openblas32 {_version('scipy-openblas32')}"
    spec = find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return Candidate(SCIPY, origin, None, unavailable="not installed in the bridge's environment")
    lib_dir = Path(list(spec.submodule_search_locations)[0]) / "lib"
    code = next(iter(sorted(lib_dir.glob("libscipy_openblas*.so"))), None)
    if code is None:
        return Candidate(SCIPY, origin, None, unavailable=f"its library is missing from {lib_dir}")
    try:
        path = forwarding_library(code)
    except ForwarderError as error:
        return Candidate(SCIPY, origin, None, code=str(code), unavailable=str(error))
    return Candidate(SCIPY, origin, str(path), code=str(code))


def custom(path: str) -> Candidate:
    library = Path(path).expanduser()
    if not library.is_file():
        return Candidate(CUSTOM, f"{ENV_CHOICE}={path}", None, unavailable=f"{library} does not exist")
    return Candidate(CUSTOM, f"{ENV_CHOICE}={path}", str(library.resolve()))


def all_candidates(setting: str) -> List[Candidate]:
    """Every library worth checking under the TUNELAB_BLAS `setting`, the reference BLAS last."""
    found = [system(), scipy_openblas32(), cmeel()]
    if setting not in ("", "auto", REFERENCE, *NAMES):
        found.insert(0, custom(setting))
    return [*found, reference()]
