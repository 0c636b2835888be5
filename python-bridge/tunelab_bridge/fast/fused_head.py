"""The vocabulary head and its cross-entropy as one native kernel (csrc/host_kernels.cpp).

At the loss positions the head is two large products over the frozen (V x D) weight: logits
x @ W^T forward and (softmax - onehot) @ W backward. Through MLX they run as two separate BLAS
calls with an N x V softmax written and read in between. The fused kernel walks the vocabulary
once, in chunks that stay in cache, computing each chunk's logits, their exponentials against a
running maximum, and their contribution to d ce / d x in one pass: the logits stream a packed
copy of W, the gradient reads the chunk's row-major rows while they are still in L2, and for
SmolLM2's head (32 rows) the pass runs at about the CPU's sgemm rate. The gradient is therefore
computed in the forward and kept for the backward; the weight is frozen and gets none.
"""

from __future__ import annotations

import ctypes
from typing import Optional, Tuple

import mlx.core as mx
import numpy as np

from .host_buffers import PANEL, aligned_empty, float_pointer, library_for, path_cap, usable_cores

class FusedHead:
    """A frozen float32 head weight prepared for the kernel: a row-major copy (for the gradient)
    and a copy packed as W^T in 16-row panels (for the logits), both made once per run."""

    def __init__(self, weight: mx.array, threads: Optional[int] = None, path: Optional[str] = None, chunk: int = 0):
        """threads: default one per usable core; path: the highest path the kernel may take,
        "avx512", "avx2" or "portable" (default: the TUNELAB_HOST_KERNELS_PATH environment variable,
        else the best the CPU has); chunk: vocabulary rows per chunk
        (0: the kernel's tuned default; tests use small chunks to cross many boundaries)."""
        lib = library_for(weight, "the fused head")
        self._lib = lib
        self.vocab, self.dim = weight.shape
        self.weight = aligned_empty(self.vocab * self.dim).reshape(self.vocab, self.dim)
        self.weight[...] = np.asarray(weight)
        panels = -(-self.vocab // PANEL)
        self.packed = aligned_empty(panels * PANEL * self.dim)
        lib.tunelab_pack_head(float_pointer(self.weight), self.vocab, self.dim, float_pointer(self.packed))
        self.threads = threads or usable_cores()
        self.chunk = chunk
        self.cap = path_cap(path)
        self.path = lib.tunelab_fused_cross_entropy_path(self.dim, self.cap).decode()
        self._cross_entropy = self._make_custom_function()

    def compute(self, rows: np.ndarray, targets: np.ndarray, with_gradient: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(ce (N,), d ce_r / d rows_r (N, D) or None) for rows (N, D) and targets (N,)."""
        x = np.ascontiguousarray(rows, dtype=np.float32)
        t = np.ascontiguousarray(targets, dtype=np.int32)
        n = t.shape[0]
        if x.shape != (n, self.dim):
            raise ValueError(f"rows of shape {x.shape} do not match {n} targets and hidden size {self.dim}")
        ce = np.empty(n, dtype=np.float32)
        grad = np.empty((n, self.dim), dtype=np.float32) if with_gradient else None
        if n == 0:
            return ce, grad
        status = self._lib.tunelab_fused_cross_entropy(
            float_pointer(x),
            t.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            n,
            self.dim,
            float_pointer(self.weight),
            float_pointer(self.packed),
            self.vocab,
            float_pointer(ce),
            float_pointer(grad),
            self.threads,
            self.chunk,
            self.cap,
        )
        if status != 0:
            raise ValueError(f"a target is outside the vocabulary of {self.vocab} tokens")
        return ce, grad

    def _make_custom_function(self):
        @mx.custom_function
        def cross_entropy(rows: mx.array, targets: mx.array) -> Tuple[mx.array, mx.array]:
            # Evaluates its inputs mid-graph: allowed under value_and_grad, not inside mx.compile.
            mx.eval(rows, targets)
            ce, grad = self.compute(np.asarray(rows.astype(mx.float32)), np.asarray(targets), with_gradient=True)
            return mx.array(ce), mx.array(grad).astype(rows.dtype)

        @cross_entropy.vjp
        def cross_entropy_vjp(primals, cotangents, outputs):
            _, targets = primals
            return outputs[1] * cotangents[0].astype(outputs[1].dtype)[:, None], mx.zeros_like(targets)

        return cross_entropy

    def cross_entropy(self, normed_rows: mx.array, targets: mx.array) -> mx.array:
        """Per-row cross-entropy (N,) of the logits normed_rows @ W^T, differentiable in the rows."""
        return self._cross_entropy(normed_rows, targets)[0]

    def cross_entropy_values(self, normed_rows: mx.array, targets: mx.array) -> mx.array:
        """The same values without computing a gradient (validation)."""
        mx.eval(normed_rows, targets)
        ce, _ = self.compute(np.asarray(normed_rows.astype(mx.float32)), np.asarray(targets), with_gradient=False)
        return mx.array(ce)
