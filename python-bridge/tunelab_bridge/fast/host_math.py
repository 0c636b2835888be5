"""The host's arithmetic, as NumPy forward/backward pairs: one copy, used by every strategy.

The autodiff strategy wraps these in `mx.custom_function`s (host_ops.py, loss_head.py), the
written-out host step calls them directly (host_step.py); the attention pair lives beside its
cos/sin table in host_attention.py and the frozen products in frozen_linear.py. Each forward
returns what its backward needs, so nothing is recomputed. All float32 on (M, D) rows.

Why on the host at all: MLX's x86 CPU backend computes exp (sigmoid, SiLU, softmax) one element
at a time, ~15-18 ns each; NumPy's is vectorised.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> Tuple[np.ndarray, np.ndarray]:
    """(weight * x / sqrt(mean(x^2) + eps), the per-row 1/sqrt(...)) for rows x (M, D),
    the arithmetic of mx.fast.rms_norm."""
    inv = np.einsum("md,md->m", x, x)
    inv /= np.float32(x.shape[-1])
    inv += np.float32(eps)
    np.sqrt(inv, out=inv)
    np.reciprocal(inv, out=inv)
    y = x * inv[:, None]
    y *= weight
    return y, inv


def rms_norm_backward(x: np.ndarray, inv: np.ndarray, weight: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """d/dx of `rms_norm`: with g = weight * dy, dx = inv * g - x * inv^3 * mean(g * x)."""
    g = dy * weight
    mean = np.einsum("md,md->m", g, x)
    mean *= inv**3 / np.float32(x.shape[-1])
    g *= inv[:, None]
    g -= x * mean[:, None]
    return g


def swiglu(gate: np.ndarray, up: np.ndarray) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """(silu(gate) * up, (d out/d gate, d out/d up)): mlx-lm's SwiGLU with its two partial
    derivatives, d/dgate = up * s * (1 + gate * (1 - s)) with s = sigmoid(gate), d/dup = silu(gate)."""
    s = np.negative(gate)
    np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)  # sigmoid(gate)
    silu = gate * s
    d_gate = 1.0 - s
    d_gate *= gate
    d_gate += 1.0
    d_gate *= s
    d_gate *= up
    return silu * up, (d_gate, silu)


def swiglu_backward(partials: Tuple[np.ndarray, np.ndarray], d_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(d gate, d up) from the output's cotangent and `swiglu`'s partials."""
    d_gate, silu = partials
    return d_out * d_gate, d_out * silu


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(per-row cross-entropy, softmax - onehot(targets)) for logits (N, V): the softmax is kept
    from the forward for the backward (autodiff of logsumexp would exponentiate again)."""
    x = np.array(logits, dtype=np.float32)
    t = np.asarray(targets).astype(np.int64)
    x -= x.max(axis=-1, keepdims=True)
    rows = np.arange(x.shape[0])
    picked = x[rows, t]
    np.exp(x, out=x)
    total = x.sum(axis=-1, keepdims=True)
    ce = np.log(total[:, 0]) - picked
    x /= total
    x[rows, t] -= 1.0
    return ce.astype(np.float32), x
