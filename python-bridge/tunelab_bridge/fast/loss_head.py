"""Masked next-token cross-entropy that computes the final norm and vocabulary logits only at
the positions the loss counts.

The vocabulary projection (vocab x hidden, the largest matmul of a small model) dominates a
step when the answer is a few tokens of a longer prompt; the norm is per position, so picking
the rows first and normalising after gives the same values as mlx-lm's `default_loss`.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .anatomy import Anatomy


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
    ce = nn.losses.cross_entropy(logits, targets) * weights
    return ce.astype(mx.float32).sum() / ntoks
