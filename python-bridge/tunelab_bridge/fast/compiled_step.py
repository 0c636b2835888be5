"""mx.compile of the loss-and-gradient function.

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


def compiled_value_and_grad(model: nn.Module, loss: LossFn) -> Callable[..., Tuple[mx.array, dict]]:
    """Like `nn.value_and_grad(model, loss)`, traced once per input shape."""

    def pure(trainable: dict, everything: dict, *args: mx.array) -> mx.array:
        model.update(everything)
        model.update(trainable)
        return loss(*args)

    traced = mx.compile(mx.value_and_grad(pure, argnums=0))

    def call(*args: mx.array) -> Tuple[mx.array, dict]:
        everything = model.parameters()
        try:
            return traced(model.trainable_parameters(), everything, *args)
        finally:
            model.update(everything)

    return call


def compiled_loss(model: nn.Module, loss: LossFn) -> LossFn:
    """`loss` traced once per input shape, for validation batches."""

    def pure(everything: dict, *args: mx.array) -> mx.array:
        model.update(everything)
        return loss(*args)

    traced = mx.compile(pure)

    def call(*args: mx.array) -> mx.array:
        everything = model.parameters()
        try:
            return traced(everything, *args)
        finally:
            model.update(everything)

    return call
