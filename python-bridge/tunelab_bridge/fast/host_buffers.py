"""What the native host kernels' callers share: the loaded library for a weight, NumPy buffers
as the kernels take them (csrc/host_kernels.cpp), and how many threads they may use."""

from __future__ import annotations

import ctypes
from typing import Optional

import mlx.core as mx
import numpy as np

from ..cpu import usable_cores  # noqa: F401 - the bridge's one thread budget, shared with OpenBLAS

PANEL = 16  # rows of W per packed panel (the kernels' layout of W^T)


def aligned_empty(count: int) -> np.ndarray:
    """A float32 array whose data starts on a cache line (the kernels' vector loads never split one)."""
    buffer = np.empty(count + 16, dtype=np.float32)
    start = (-buffer.ctypes.data % 64) // 4
    return buffer[start : start + count]


def to_host(a: mx.array) -> np.ndarray:
    """A float32 NumPy view (or copy, for other dtypes) of an evaluated MLX array."""
    return np.asarray(a.astype(mx.float32) if a.dtype != mx.float32 else a)


def float_pointer(a: Optional[np.ndarray]):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def library_for(weight: mx.array, what: str) -> ctypes.CDLL:
    """The host kernels' library for a frozen `weight` (checked 2-D float32 and evaluated);
    RuntimeError with the one-sentence reason when the library is unavailable."""
    from . import host_kernels  # not at import time: `python -m ...host_kernels` imports this package

    lib, why = host_kernels.load()
    if lib is None:
        raise RuntimeError(why)
    if weight.ndim != 2 or weight.dtype != mx.float32:
        raise ValueError(f"{what} takes a 2-D float32 weight, got {weight.dtype} {weight.shape}")
    mx.eval(weight)
    return lib


def path_cap(path: Optional[str] = None) -> int:
    """The kernels' `cap` for the highest path allowed (default: host_kernels.PATH_ENV's, else the best)."""
    from . import host_kernels

    return host_kernels.path_cap(path)
