"""The adapted blocks' frozen projections as native products (csrc/host_kernels.cpp).

LoRA trains small adapters beside the blocks' linear layers, whose own weights never change
during a run. BLAS re-packs such a weight at every call (for SmolLM2's blocks, at ~60 rows, a
third of its time goes into packing and thread hand-offs); here W^T is packed once per run and
the forward x @ W^T and the backward dy @ W walk W once per call, on threads kept between calls.
The weight gets no gradient: only the input's cotangent is computed. The backward is the same
kernel over a second packed copy, of W^T: W's rows walked as strips of a row-major array come
from memory ~25% slower than packed panels (SmolLM2's 4 adapted blocks hold ~57 MB of
projections, more than the L3 cache, so every product streams its weight from DRAM).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .host_buffers import PANEL, aligned_empty, float_pointer, library_for, path_cap, usable_cores

# The projections of a llama (or qwen2) block that Anatomy.run_block calls, as (submodule, attribute).
BLOCK_PROJECTIONS = (
    ("self_attn", "q_proj"),
    ("self_attn", "k_proj"),
    ("self_attn", "v_proj"),
    ("self_attn", "o_proj"),
    ("mlp", "gate_proj"),
    ("mlp", "up_proj"),
    ("mlp", "down_proj"),
)


def base_linear(module: nn.Module) -> Optional[nn.Module]:
    """The plain linear layer whose product `module` computes: itself, the frozen layer inside
    mlx-lm's LoRALinear, or None for anything else (quantized, DoRA, mixtures of experts)."""
    from mlx_lm.tuner.lora import LoRALinear

    if type(module) is LoRALinear:
        module = module.linear
    return module if type(module) is nn.Linear else None


def block_projections(blocks: Iterable[nn.Module]) -> list:
    """Every projection module of these mirrored blocks, in run_block's order."""
    return [getattr(getattr(block, part), name) for block in blocks for part, name in BLOCK_PROJECTIONS]


class FrozenLinear:
    """y = x @ W^T for a frozen float32 weight W (out x in), with the input's gradient dy @ W.
    Holds W^T packed in the kernel's 16-column panels and, for the backward, W packed the same
    way (or W itself, MLX's row-major buffer, where only that width has the fast path)."""

    def __init__(self, weight: mx.array, threads: Optional[int] = None, path: Optional[str] = None, bias: Optional[mx.array] = None):
        """threads: default one per usable core; path: the highest path the kernels may take,
        "avx512", "avx2" or "portable" (default: the TUNELAB_HOST_KERNELS_PATH environment
        variable, else the best the CPU has); bias: a frozen (out,) bias added to the product
        (qwen2's q/k/v projections have one)."""
        lib = library_for(weight, "a frozen linear")
        self._lib = lib
        self.out_features, self.in_features = weight.shape
        # A view of MLX's buffer where it is already row-major (no copy); the array is kept so the
        # buffer lives as long as this object.
        self._source = weight
        self.weight = np.ascontiguousarray(np.asarray(weight))
        if bias is not None:
            mx.eval(bias)
        self.bias = None if bias is None else np.array(bias, dtype=np.float32).reshape(self.out_features)
        panels = -(-self.out_features // PANEL)
        self.packed = aligned_empty(panels * PANEL * self.in_features)
        lib.tunelab_pack_head(float_pointer(self.weight), self.out_features, self.in_features, float_pointer(self.packed))
        self.threads = threads or usable_cores()
        self.cap = path_cap(path)
        self.path = lib.tunelab_linear_path(self.in_features, self.cap).decode()
        # dy @ W = dy @ (W^T)^T: the forward kernel over W^T packed, where dy's width (out) takes
        # the same path as x's; otherwise the row-major kernel.
        self.packed_transposed: Optional[np.ndarray] = None
        if lib.tunelab_linear_path(self.out_features, self.cap).decode() == self.path:
            self.packed_transposed = aligned_empty(-(-self.in_features // PANEL) * PANEL * self.out_features)
            transposed = np.ascontiguousarray(self.weight.T)
            lib.tunelab_pack_head(float_pointer(transposed), self.in_features, self.out_features, float_pointer(self.packed_transposed))
        self._project = self._make_custom_function()

    def __call__(self, x: mx.array) -> mx.array:
        """x (..., in) -> (..., out), differentiable in x."""
        return self._project(x)

    def forward(self, rows: np.ndarray) -> np.ndarray:
        """rows (M, in) -> rows @ W^T (+ bias) (M, out)."""
        x = np.ascontiguousarray(rows, dtype=np.float32)
        y = np.empty((x.shape[0], self.out_features), dtype=np.float32)
        if x.shape[0]:
            self._lib.tunelab_linear_forward(float_pointer(x), x.shape[0], self.in_features, float_pointer(self.packed), self.out_features, float_pointer(y), self.threads, self.cap)
        if self.bias is not None:
            y += self.bias
        return y

    def backward(self, cotangent: np.ndarray) -> np.ndarray:
        """cotangent (M, out) -> cotangent @ W (M, in)."""
        dy = np.ascontiguousarray(cotangent, dtype=np.float32)
        dx = np.empty((dy.shape[0], self.in_features), dtype=np.float32)
        if dy.shape[0] and self.packed_transposed is not None:
            self._lib.tunelab_linear_forward(float_pointer(dy), dy.shape[0], self.out_features, float_pointer(self.packed_transposed), self.in_features, float_pointer(dx), self.threads, self.cap)
        elif dy.shape[0]:
            self._lib.tunelab_linear_backward(float_pointer(dy), dy.shape[0], self.out_features, float_pointer(self.weight), self.in_features, float_pointer(dx), self.threads, self.cap)
        return dx

    def _make_custom_function(self) -> Callable[[mx.array], mx.array]:
        @mx.custom_function
        def project(x: mx.array) -> mx.array:
            # Evaluates its input mid-graph: allowed under value_and_grad, not inside mx.compile.
            mx.eval(x)
            y = self.forward(np.asarray(x.astype(mx.float32)).reshape(-1, self.in_features))
            return mx.array(y).reshape(*x.shape[:-1], self.out_features).astype(x.dtype)

        @project.vjp
        def project_vjp(x, cotangent, output):
            # One input and one output: MLX passes (and expects back) single arrays, not tuples.
            mx.eval(cotangent)
            dx = self.backward(np.asarray(cotangent.astype(mx.float32)).reshape(-1, self.out_features))
            return mx.array(dx).reshape(x.shape).astype(x.dtype)

        return project


def frozen_linears(modules: Iterable[nn.Module]) -> Dict[int, FrozenLinear]:
    """Native replacements for these modules' base layers, keyed by id() of the base layer (the
    key Anatomy's projection helper looks up)."""
    out: Dict[int, FrozenLinear] = {}
    for module in modules:
        base = base_linear(module)
        if base is not None and id(base) not in out:
            out[id(base)] = FrozenLinear(base.weight, bias=base.get("bias"))
    return out
