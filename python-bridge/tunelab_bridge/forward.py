"""The training forward pass, split where a faster step can cut it.

    embed_and_frozen(model, inputs, upto)   embedding + the blocks that carry no adapter
    adapted_blocks(model, h, mask, start)    the blocks that carry LoRA (gradients flow here)
    head_loss(model, h, targets, lengths)    final norm + LM head + masked cross-entropy

The frozen part sees fixed weights and fixed inputs, so its output per example could be cached
once and the step run from `adapted_blocks` on; the head could be evaluated only at loss
positions; the whole step could go through `mx.compile`. Composed as they are here the three
give exactly mlx-lm's `default_loss`. Models whose layout is not the plain decoder stack below
use `default_loss` itself.
"""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.tuner.trainer import default_loss

LossFn = Callable[[nn.Module, mx.array, mx.array], tuple[mx.array, mx.array]]

# Decoder stacks whose model(inputs) is exactly: embed -> blocks(h, "causal") -> norm -> head.
_PLAIN_STACKS = frozenset({"llama", "mistral", "qwen2"})


def is_plain_stack(model: nn.Module) -> bool:
    inner = getattr(model, "model", None)
    args = getattr(model, "args", None)
    return (
        getattr(model, "model_type", None) in _PLAIN_STACKS
        and inner is not None
        and hasattr(inner, "embed_tokens")
        and hasattr(inner, "norm")
        and getattr(args, "sliding_window", None) is None
    )


def embed_and_frozen(model: nn.Module, inputs: mx.array, upto: int) -> tuple[mx.array, Any]:
    from mlx_lm.models.base import create_attention_mask

    inner = model.model
    h = inner.embed_tokens(inputs)
    mask = create_attention_mask(h, None)
    for layer in inner.layers[:upto]:
        h = layer(h, mask, cache=None)
    return h, mask


def adapted_blocks(model: nn.Module, h: mx.array, mask: Any, start: int) -> mx.array:
    for layer in model.model.layers[start:]:
        h = layer(h, mask, cache=None)
    return h


def head_loss(model: nn.Module, h: mx.array, targets: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
    h = model.model.norm(h)
    if model.args.tie_word_embeddings:
        logits = model.model.embed_tokens.as_linear(h)
    else:
        logits = model.lm_head(h)
    steps = mx.arange(1, targets.shape[1] + 1)
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
    ce = nn.losses.cross_entropy(logits, targets) * mask
    ntoks = mask.sum()
    return ce.astype(mx.float32).sum() / ntoks, ntoks


def make_loss(model: nn.Module, adapted_layers: int) -> LossFn:
    """The loss for a model with LoRA in its last `adapted_layers` blocks."""
    if not is_plain_stack(model):
        return default_loss
    start = max(0, len(model.model.layers) - adapted_layers)

    def split_loss(model: nn.Module, batch: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        h, mask = embed_and_frozen(model, inputs, start)
        h = adapted_blocks(model, h, mask, start)
        return head_loss(model, h, targets, lengths)

    return split_loss
