"""A forwarding library that gives scipy-openblas32 the plain BLAS/LAPACK names MLX binds.

scipy-openblas32 (a current DYNAMIC_ARCH OpenBLAS on PyPI, LP64, self-contained) exports
`scipy_cblas_sgemm`, `scipy_sgetrf_` and so on, so that it never clashes with another BLAS in a
process. The forwarder exports `cblas_sgemm`, `sgetrf_`, ... as one-instruction tail jumps to
the prefixed functions: no signatures are involved, so every routine forwards exactly, arguments
and return values untouched. It is assembled from a generated listing with the C compiler and
cached like the other native builds (native_build.py), keyed by the library it forwards to.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import List

from ..native_build import BuildError, build_shared

PREFIX = "scipy_"
COMPILER = "gcc"

# One stub per symbol: a tail jump through the PLT to the prefixed function.
_STUB = {
    "x86_64": ".globl {name}\n.type {name},@function\n{name}:\n\tjmp {target}@PLT\n.size {name},.-{name}\n",
    "aarch64": ".globl {name}\n.type {name},%function\n{name}:\n\tb {target}\n.size {name},.-{name}\n",
}


class ForwarderError(RuntimeError):
    """One sentence saying why the forwarder could not be made."""


def exported_functions(library: Path) -> List[str]:
    """The library's exported function names (its dynamic symbol table, read with nm)."""
    nm = shutil.which("nm")
    if nm is None:
        raise ForwarderError("its forwarding library needs binutils' nm (install binutils, which comes with g++)")
    done = subprocess.run([nm, "-D", "--defined-only", str(library)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ForwarderError(f"nm could not read {library} ({done.stderr.strip()[:200]})")
    names = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("T", "W", "i"):
            names.append(parts[2].split("@")[0])
    return sorted(set(names))


def listing(library: Path) -> str:
    """The assembly of the forwarder for `library` (its path and size in a comment, so another
    build of the library makes another forwarder)."""
    machine = platform.machine()
    stub = _STUB.get(machine)
    if stub is None:
        raise ForwarderError(f"no forwarding stub is written for {machine}")
    stat = os.stat(library)
    lines = [f"/* forwards to {library.resolve()} ({stat.st_size} bytes, {stat.st_mtime_ns}) */", ".text"]
    for name in exported_functions(library):
        if name.startswith(PREFIX) and len(name) > len(PREFIX):
            lines.append(stub.format(name=name[len(PREFIX) :], target=name))
    if len(lines) < 3:
        raise ForwarderError(f"{library} exports no {PREFIX}-prefixed functions")
    lines.append('.section .note.GNU-stack,"",@progbits')
    return "\n".join(lines) + "\n"


def forwarding_library(library: Path) -> Path:
    """The forwarder for `library`, built now unless it already is."""
    lib_dir = str(library.resolve().parent)
    link = [f"-L{lib_dir}", f"-l:{library.name}", f"-Wl,-rpath,{lib_dir}"]
    try:
        return build_shared("blas-forwarder", listing(library), ".S", COMPILER, ["-shared", "-fPIC"], link, what="the scipy-openblas32 forwarding library")
    except BuildError as error:
        raise ForwarderError(str(error)) from error
