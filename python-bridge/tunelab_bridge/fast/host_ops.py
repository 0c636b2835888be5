"""Element-wise activations computed on the host with NumPy.

MLX's CPU backend has no x86 SIMD path: its `exp` (and with it sigmoid, SiLU and softmax) runs
one element at a time, ~15-18 ns each, so SwiGLU over a 64-token block (98k elements) costs
~2.2 ms, three times the block's gate projection. NumPy's vectorised exp does the same in a
fraction of that. Each function is an `mx.custom_function` over host_math's arithmetic whose
forward also returns the factors its gradient needs, so the backward pass is plain MLX
multiplications (nothing is recomputed and nothing crosses to the host a second time).

The forward evaluates its inputs mid-graph, so these run outside `mx.compile` traces.
"""

from __future__ import annotations

import mlx.core as mx

from . import host_math
from .host_buffers import to_host


@mx.custom_function
def _swiglu(gate: mx.array, up: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """silu(gate) * up, and its two partial derivatives (host_math.swiglu), kept for the vjp."""
    mx.eval(gate, up)
    out, (d_gate, silu) = host_math.swiglu(to_host(gate), to_host(up))
    dtype = gate.dtype
    return mx.array(out).astype(dtype), mx.array(d_gate).astype(dtype), mx.array(silu).astype(dtype)


@_swiglu.vjp
def _swiglu_vjp(primals, cotangents, outputs):
    d_out = cotangents[0]
    _, d_gate, silu = outputs
    return d_out * d_gate, d_out * silu


def swiglu(gate: mx.array, up: mx.array) -> mx.array:
    """mlx-lm's `swiglu(gate, x)` = silu(gate) * x, computed on the host."""
    return _swiglu(gate, up)[0]
