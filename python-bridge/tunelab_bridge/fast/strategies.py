"""How one step's loss and gradients are computed, one small class per way (the plan picks one):

- MlxLmStep       mlx-lm's own `default_loss` under `nn.value_and_grad`: where the fast path
                  cannot split the model, or as the reference
- AutodiffStep    the model's part (blocks from the first one not cached, the loss-position
                  head) under MLX's autodiff, host pieces inside it as custom functions
- CompiledStep    the same model's part traced by `mx.compile` (no host pieces can be inside)
- HostStepPlan    the adapted blocks' forward and backward written out on the host (host_step.py)

Every strategy takes the batch as loss.py lays it out (`StepArgs`) and returns ((loss, ntoks),
grads) with grads shaped like the model's trainable parameters, as
`nn.value_and_grad(model, default_loss)` does; `loss` returns (loss, ntoks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.tuner.trainer import default_loss

from .blocks import BlockRunner
from .compiled_step import compiled_loss, compiled_value_and_grad
from .host_step import HostStep

Grads = dict


@dataclass(frozen=True)
class StepArgs:
    """One batch as the strategies take it: the mlx-lm batch itself and its fast-path layout."""

    batch: mx.array
    lengths: mx.array
    inputs: Optional[mx.array] = None  # tokens, or the cached prefix output (B, W, D)
    positions: Optional[mx.array] = None  # flat indices of the loss rows
    targets: Optional[mx.array] = None
    weights: Optional[mx.array] = None
    ntoks: Optional[mx.array] = None
    tail_start: int = 0


# (hidden after the model's part, targets, weights, ntoks) -> loss
HeadLoss = Callable[[mx.array, mx.array, mx.array, mx.array], mx.array]


@dataclass(frozen=True, eq=False)
class ModelPart:
    """Blocks from `start` (the first not served by the prefix cache), then the head's input rows."""

    runner: BlockRunner
    start: int
    cached: bool
    tail: bool
    head_input: Callable[..., mx.array]

    def __call__(self, inputs: mx.array, positions: mx.array, tail_start: int = 0) -> mx.array:
        anatomy = self.runner.anatomy
        h = inputs if self.cached else anatomy.embed_tokens(inputs)
        if self.tail:
            last = len(anatomy.blocks) - 1
            h = self.runner.run_last_block_from(self.runner.run_blocks(h, self.start, last), tail_start)
        else:
            h = self.runner.run_blocks(h, self.start)
        return self.head_input(anatomy, h, positions)


class MlxLmStep:
    def __init__(self, model: nn.Module):
        self.model = model
        self._value_and_grad = nn.value_and_grad(model, default_loss)

    def value_and_grad(self, a: StepArgs) -> Tuple[Tuple[mx.array, mx.array], Grads]:
        return self._value_and_grad(self.model, a.batch, a.lengths)

    def loss(self, a: StepArgs) -> Tuple[mx.array, mx.array]:
        return default_loss(self.model, a.batch, a.lengths)


class AutodiffStep:
    def __init__(self, model: nn.Module, part: ModelPart, head_loss: HeadLoss, head_loss_only: HeadLoss):
        def loss(inputs, positions, targets, weights, ntoks, tail_start=0):
            return head_loss(part(inputs, positions, tail_start), targets, weights, ntoks)

        def loss_only(inputs, positions, targets, weights, ntoks, tail_start=0):
            return head_loss_only(part(inputs, positions, tail_start), targets, weights, ntoks)

        self._value_and_grad = nn.value_and_grad(model, loss)
        self._loss_only = loss_only

    def value_and_grad(self, a: StepArgs) -> Tuple[Tuple[mx.array, mx.array], Grads]:
        loss, grads = self._value_and_grad(a.inputs, a.positions, a.targets, a.weights, a.ntoks, a.tail_start)
        return (loss, a.ntoks), grads

    def loss(self, a: StepArgs) -> Tuple[mx.array, mx.array]:
        return self._loss_only(a.inputs, a.positions, a.targets, a.weights, a.ntoks, a.tail_start), a.ntoks


class CompiledStep:
    def __init__(self, model: nn.Module, part: ModelPart, head_loss: HeadLoss, head_loss_only: HeadLoss):
        # The model's part (compiled) takes the first three arguments, the head's loss the rest.
        self._value_and_grad = compiled_value_and_grad(model, part, head_loss, 3)
        self._loss_only = compiled_loss(model, part, head_loss_only, 3)

    def value_and_grad(self, a: StepArgs) -> Tuple[Tuple[mx.array, mx.array], Grads]:
        loss, grads = self._value_and_grad(a.inputs, a.positions, a.tail_start, a.targets, a.weights, a.ntoks)
        return (loss, a.ntoks), grads

    def loss(self, a: StepArgs) -> Tuple[mx.array, mx.array]:
        return self._loss_only(a.inputs, a.positions, a.tail_start, a.targets, a.weights, a.ntoks), a.ntoks


class HostStepPlan:
    def __init__(self, host: HostStep, runner: BlockRunner, first: int, cached: bool):
        self._host, self._runner, self._first, self._cached = host, runner, first, cached

    def _block_input(self, inputs: mx.array) -> mx.array:
        # The frozen blocks get no gradient: their output is an input to the host step.
        if self._cached:
            return inputs
        return self._runner.run_blocks(self._runner.anatomy.embed_tokens(inputs), 0, self._first)

    def value_and_grad(self, a: StepArgs) -> Tuple[Tuple[mx.array, mx.array], Any]:
        loss, grads = self._host.loss_and_grad(self._block_input(a.inputs), a.positions, a.targets, a.weights, a.ntoks, a.tail_start)
        return (loss, a.ntoks), grads

    def loss(self, a: StepArgs) -> Tuple[mx.array, mx.array]:
        loss, _ = self._host.loss_and_grad(self._block_input(a.inputs), a.positions, a.targets, a.weights, a.ntoks, a.tail_start, with_gradient=False)
        return loss, a.ntoks
