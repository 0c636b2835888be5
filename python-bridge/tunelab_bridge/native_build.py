"""Small shared libraries the bridge compiles itself (host kernels, the BLAS forwarding library,
the crash reporter), built once into the tunelab cache.

A library's file name carries a hash of everything it is built from: its source text, the
compiler's identity and command, and the target machine. An edited source or another compiler
builds a new file beside the old one, so nothing stale is ever loaded. None of these builds
passes a CPU-specific flag (-march): code that needs newer instructions selects them at run time,
so one build is right on every CPU of the architecture, and each CPU still checks it before use
(isolated.py).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from .cache import cache_dir

SETUP_HINT = "install g++ and run npm run setup"


class BuildError(RuntimeError):
    """The library could not be built; the message is one sentence saying why and what to do."""


@lru_cache(maxsize=None)
def compiler_identity(compiler: str) -> str:
    """The compiler's first line of `--version` (another compiler version builds another file)."""
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return compiler
    return (done.stdout.splitlines() or [compiler])[0]


def library_path(kind: str, source: str, compiler: str, flags: Sequence[str], suffix: str = ".so") -> Path:
    """Where the build of `source` (its text) with this compiler and these flags lives."""
    digest = hashlib.sha256()
    for part in (source, compiler_identity(compiler) if shutil.which(compiler) else compiler, *flags, platform.machine(), sys.platform):
        digest.update(part.encode())
        digest.update(b"\0")
    return cache_dir() / kind / f"{kind}-{digest.hexdigest()[:16]}{suffix}"


def build_shared(kind: str, source: str, source_suffix: str, compiler: str, flags: Sequence[str], link: Sequence[str] = (), what: str = "") -> Path:
    """The shared library built from `source` (text), compiled now unless it already is."""
    target = library_path(kind, source, compiler, [*flags, *link])
    if target.is_file():
        return target
    what = what or kind
    path = shutil.which(compiler)
    if path is None:
        raise BuildError(f"{what} could not be built: {compiler} not found; {SETUP_HINT}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built under temporary names, then renamed: a bridge starting beside this one either finds
    # no library (and builds its own) or a complete one.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        src = Path(work) / f"source{source_suffix}"
        src.write_text(source, encoding="utf-8")
        out = Path(work) / target.name
        result = subprocess.run([path, *flags, str(src), "-o", str(out), *link], capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"{what} could not be built: {compiler} failed ({last}); {SETUP_HINT}")
        os.chmod(out, 0o755)
        os.replace(out, target)
    return target
