"""Masked next-token cross-entropy that computes the final norm and vocabulary logits only at
the positions the loss counts.

The vocabulary projection (vocab x hidden, the largest matmul of a small model) dominates a
step when the answer is a few tokens of a longer prompt; the norm is per position, so picking
the rows first and normalising after gives the same values as mlx-lm's `default_loss`.
The cross-entropy keeps its softmax from the forward pass for the backward pass: autodiff of
`logsumexp` would exponentiate every logit a second time, and on MLX's CPU backend `exp` over
positions x vocabulary is a large share of a step (so on the CPU the softmax runs in NumPy; on a
GPU, MLX's own cross-entropy).
Where the fused head applies (fused_head.py), the logits are never formed: the normed rows go
straight to a native kernel that computes the cross-entropy and its gradient together.
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx
import numpy as np

from . import host_math
from .anatomy import Anatomy
from .fused_head import FusedHead
from .host_buffers import to_host

HeadLoss = Callable[[mx.array, mx.array, mx.array, mx.array], mx.array]


@mx.custom_function
def _cross_entropy(logits: mx.array, targets: mx.array) -> tuple[mx.array, mx.array]:
    """Per-row cross-entropy (float32), and `softmax - onehot(targets)` (kept for the gradient).

    The softmax runs on the host (host_math): MLX's CPU `exp` is scalar (~15 ns per element, about
    20 ms for 32 positions x 49152 logits), NumPy's is vectorised (~1 ms). This evaluates the
    logits mid-graph, so it must stay outside `mx.compile` (it is allowed under value_and_grad),
    and it is only for the CPU: on a GPU it would copy the logits to the host every step.
    """
    mx.eval(logits, targets)
    ce, d_logits = host_math.softmax_cross_entropy(to_host(logits), np.asarray(targets))
    return mx.array(ce), mx.array(d_logits).astype(logits.dtype)


@_cross_entropy.vjp
def _cross_entropy_vjp(primals, cotangents, outputs):
    logits, targets = primals
    d_ce = cotangents[0]
    d_logits = outputs[1] * d_ce.astype(outputs[1].dtype)[:, None]
    return d_logits, mx.zeros_like(targets)


def _masked_mean(ce: mx.array, weights: mx.array, ntoks: mx.array) -> mx.array:
    return (ce * weights).astype(mx.float32).sum() / ntoks


def masked_cross_entropy(logits: mx.array, targets: mx.array, weights: mx.array, ntoks: mx.array) -> mx.array:
    """Mean cross-entropy of `logits` (N, V) over the rows whose weight is 1 (softmax on the host)."""
    ce, _ = _cross_entropy(logits, targets)
    return _masked_mean(ce, weights, ntoks)


def device_masked_cross_entropy(logits: mx.array, targets: mx.array, weights: mx.array, ntoks: mx.array) -> mx.array:
    """The same with MLX's own cross-entropy, as mlx-lm's default_loss computes it (GPUs)."""
    import mlx.nn as nn

    return _masked_mean(nn.losses.cross_entropy(logits, targets), weights, ntoks)


def fused_masked_cross_entropy(head: FusedHead, with_gradient: bool = True) -> HeadLoss:
    """`masked_cross_entropy` taking the normed rows (N, D) instead of their logits: the fused
    kernel projects them onto the vocabulary itself. Without gradient (validation) the kernel
    skips the gradient's half of the work."""
    cross_entropy = head.cross_entropy if with_gradient else head.cross_entropy_values

    def loss(normed_rows: mx.array, targets: mx.array, weights: mx.array, ntoks: mx.array) -> mx.array:
        return _masked_mean(cross_entropy(normed_rows, targets), weights, ntoks)

    return loss


def normed_rows_at_positions(anatomy: Anatomy, hidden: mx.array, positions: mx.array) -> mx.array:
    """The final norm at the flat `positions` of `hidden` (B, L, D): the head's input rows."""
    rows = mx.take(hidden.reshape(-1, hidden.shape[-1]), positions, axis=0)
    return anatomy.norm(rows)


def logits_at_positions(anatomy: Anatomy, hidden: mx.array, positions: mx.array) -> mx.array:
    """Final norm and vocabulary logits at the flat `positions` of `hidden` (B, L, D)."""
    return anatomy.head(normed_rows_at_positions(anatomy, hidden, positions))
