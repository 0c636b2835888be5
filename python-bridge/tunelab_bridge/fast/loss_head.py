"""Masked next-token cross-entropy that computes the final norm and vocabulary logits only at
the positions the loss counts.

The vocabulary projection (vocab x hidden, the largest matmul of a small model) dominates a
step when the answer is a few tokens of a longer prompt; the norm is per position, so picking
the rows first and normalising after gives the same values as mlx-lm's `default_loss`.
The cross-entropy keeps its softmax from the forward pass for the backward pass: autodiff of
`logsumexp` would exponentiate every logit a second time, and on MLX's CPU backend `exp` over
positions x vocabulary is a large share of a step.
"""

from __future__ import annotations

import mlx.core as mx

from .anatomy import Anatomy


@mx.custom_function
def _cross_entropy(logits: mx.array, targets: mx.array) -> tuple[mx.array, mx.array]:
    """Per-row cross-entropy, and the softmax it was computed from (kept for the gradient)."""
    shifted = logits - mx.stop_gradient(logits.max(axis=-1, keepdims=True))
    exp = mx.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    picked = mx.take_along_axis(shifted, targets[:, None], axis=-1)
    ce = (mx.log(total) - picked).squeeze(-1)
    return ce, exp / total


@_cross_entropy.vjp
def _cross_entropy_vjp(primals, cotangents, outputs):
    logits, targets = primals
    d_ce = cotangents[0]
    softmax = outputs[1]
    onehot = mx.arange(logits.shape[-1])[None, :] == targets[:, None]
    d_logits = (softmax - onehot.astype(softmax.dtype)) * d_ce[:, None]
    return d_logits, mx.zeros_like(targets)


def loss_at_positions(
    anatomy: Anatomy,
    hidden: mx.array,
    positions: mx.array,
    targets: mx.array,
    weights: mx.array,
    ntoks: mx.array,
) -> mx.array:
    """Mean cross-entropy over the counted positions; `hidden` is the last block's output (B, L, D)."""
    rows = mx.take(hidden.reshape(-1, hidden.shape[-1]), positions, axis=0)
    logits = anatomy.logits(rows)
    ce, _ = _cross_entropy(logits, targets)
    return (ce * weights).astype(mx.float32).sum() / ntoks
