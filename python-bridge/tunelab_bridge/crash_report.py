"""What the bridge says when native code kills it, so the cell can name the culprit.

Python's faulthandler prints the Python traceback of every thread on a fatal signal; in front of
it, a tiny native handler (csrc/crash_report.c, built once like the other native pieces) prints
one line naming the library whose instruction faulted:

    TUNELAB_FATAL signal=SIGILL library=/.../libopenblas.so.0 offset=0x1a2b3c symbol=sgemm_kernel

The kernel reads that line from the bridge's stderr (kernel/bridge/crash.ts) and tells the user
which library it was and what to do, instead of "killed by SIGILL".
"""

from __future__ import annotations

import ctypes
import faulthandler
import sys
from pathlib import Path

from .native_build import BuildError, build_shared

SOURCE = Path(__file__).with_name("csrc") / "crash_report.c"
MARKER = "TUNELAB_FATAL"

_installed: list = []  # keeps the library loaded for the life of the process


def install() -> bool:
    """faulthandler, then the library-naming handler in front of it (Linux). True when both are in place."""
    faulthandler.enable(all_threads=True)
    if not sys.platform.startswith("linux") or _installed:
        return bool(_installed)
    try:
        path = build_shared("crash-report", SOURCE.read_text(encoding="utf-8"), ".c", "gcc", ["-O2", "-shared", "-fPIC"], what="the crash reporter")
        lib = ctypes.CDLL(str(path))
    except (BuildError, OSError):
        return False  # faulthandler alone still prints where Python was
    if lib.tunelab_crash_report_install() != 0:
        return False
    _installed.append(lib)
    return True
