"""mx.compile of the model's part of the loss-and-gradient function (blocks, norm, logits).

The model's parameters enter the trace as explicit arguments, so each call reads the adapter
weights the optimizer has just written; tracing swaps placeholders into the model, so the real
arrays are put back after every call. Shapes are part of a trace's identity: the bucketed layout
keeps the number of distinct traces small. On CPU, MLX turns fused element-wise chains into C++
kernels built with g++ once and cached under $TMPDIR/mlx.
"""

from __future__ import annotations

from typing import Callable, Tuple

import mlx.core as mx
import mlx.nn as nn

LossFn = Callable[..., mx.array]


def compiled_value_and_grad(model: nn.Module, forward: LossFn, rest: LossFn, split: int) -> Callable[..., Tuple[mx.array, dict]]:
    """Like `nn.value_and_grad(model, lambda *a: rest(forward(*a[:split]), *a[split:]))`, with
    `forward` (the model's part) traced once per input shape. `rest` runs untraced: it may
    evaluate mid-graph (the loss head's host-side softmax), which a compiled trace cannot."""

    def pure(trainable: dict, everything: dict, *args: mx.array) -> mx.array:
        model.update(everything)
        model.update(trainable)
        return forward(*args)

    traced = mx.compile(pure)

    def call(*args: mx.array) -> Tuple[mx.array, dict]:
        everything = model.parameters()

        def whole(trainable: dict) -> mx.array:
            return rest(traced(trainable, everything, *args[:split]), *args[split:])

        try:
            return mx.value_and_grad(whole)(model.trainable_parameters())
        finally:
            model.update(everything)

    return call


def compiled_loss(model: nn.Module, forward: LossFn, rest: LossFn, split: int) -> LossFn:
    """`rest(forward(*args[:split]), *args[split:])` with `forward` traced once per input shape,
    for validation batches."""

    def pure(everything: dict, *args: mx.array) -> mx.array:
        model.update(everything)
        return forward(*args)

    traced = mx.compile(pure)

    def call(*args: mx.array) -> mx.array:
        everything = model.parameters()
        try:
            return rest(traced(everything, *args[:split]), *args[split:])
        finally:
            model.update(everything)

    return call
