"""Keep freed activation buffers in the process instead of handing them back to the kernel.

MLX's CPU backend allocates every intermediate array with malloc. glibc serves blocks above its
mmap threshold (128 KiB at first) with fresh mmap'd pages and trims the heap top after frees, so
a training step's activations (a 64-token x 1536 MLP activation is 393 KiB) are page-faulted in
anew at every step: ~3,000 faults per step on the embedded model. Raising the thresholds once
lets the same memory be reused step after step (measured: ~500k -> ~180k page faults over 100
steps, a few ms per step). Only glibc has these knobs; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# glibc caps the mmap threshold at 32 MiB on 64-bit systems; larger blocks (weights) stay mmap'd.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 1 * 2**30
TOP_PAD = 64 * 2**20


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for reuse; True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
