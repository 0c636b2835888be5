"""NumPy buffers as the native host kernels (csrc/host_kernels.cpp) take them, and how many
threads they may use."""

from __future__ import annotations

import ctypes
import os
from typing import Optional

import numpy as np

PANEL = 16  # rows of W per packed panel (the kernels' layout of W^T)


def aligned_empty(count: int) -> np.ndarray:
    """A float32 array whose data starts on a cache line (the kernels' vector loads never split one)."""
    buffer = np.empty(count + 16, dtype=np.float32)
    start = (-buffer.ctypes.data % 64) // 4
    return buffer[start : start + count]


def float_pointer(a: Optional[np.ndarray]):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
