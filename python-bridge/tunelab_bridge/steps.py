"""One training step on mlx-lm's public pieces: the loss and gradients (from the fast path's
strategy), gradient clipping and the optimizer update, each a compiled function; and the
validation pass. The trainer (trainer.py) calls these; nothing here knows about runs or events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from .parameter_slots import TrainableSlots


Reduce = Callable[[Any, Any, Any], Tuple[Any, Any, Any]]


@dataclass
class StepOutcome:
    loss: float
    tokens: int
    grad_norm: float


class OptimizerStep:
    """Gradient clipping and the optimizer update, each one compiled function.

    Uncompiled, Adam over a few dozen small LoRA matrices is hundreds of tiny MLX operations
    (~4 ms of a ~90 ms CPU step); traced once, the element-wise chains fuse. The update is
    traced with the model's and the optimizer's state as explicit inputs and outputs, the way
    mlx-lm's trainer compiles its step, so it must be made after any checkpoint was restored
    into `optimizer.state` (the trace holds on to that dict)."""

    def __init__(self, model: Any, optimizer: Any, grad_clip: float):
        import mlx.core as mx
        import mlx.optimizers as optim

        optimizer.init(model.trainable_parameters())  # keeps restored state; the trace needs it complete
        state = [model.state, optimizer.state]

        def update(grads: Any) -> None:
            optimizer.update(model, grads)

        self.grad_clip = grad_clip
        self._clip = mx.compile(lambda grads: optim.clip_grad_norm(grads, grad_clip))
        self._update = mx.compile(update, inputs=state, outputs=state)
        self._model, self._optimizer = model, optimizer
        self._trainable = TrainableSlots(model)

    def clip(self, grads: Any) -> tuple[Any, Any]:
        import mlx.core as mx

        if self.grad_clip > 0:
            return self._clip(grads)
        return grads, mx.array(0.0)

    def apply(self, grads: Any) -> None:
        import mlx.core as mx

        self._update(grads)
        mx.eval(self._trainable.arrays(), self._optimizer.state)


def train_step(step: OptimizerStep, loss_and_grad: Callable[..., Any], model: Any, batch: tuple[Any, Any], reduce: Optional[Reduce] = None) -> StepOutcome:
    """One optimizer step; the update is skipped when the loss or gradients are not finite.
    `reduce` turns this process's (loss, ntoks, grads) into the group's (world.World.reduce)."""
    import mlx.core as mx

    (loss, ntoks), grads = loss_and_grad(model, *batch)
    if reduce is not None:
        loss, ntoks, grads = reduce(loss, ntoks, grads)
    grads, norm = step.clip(grads)
    mx.eval(loss, ntoks, norm, grads)
    outcome = StepOutcome(float(loss.item()), int(ntoks.item()), float(norm.item()))
    if math.isfinite(outcome.loss) and math.isfinite(outcome.grad_norm):
        step.apply(grads)
    return outcome


def evaluate(model: Any, loss_fn: Callable[..., Any], batches: list[tuple[Any, Any]]) -> float:
    import mlx.core as mx

    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        loss, ntoks = loss_fn(model, *batch)
        mx.eval(loss, ntoks)
        total += float(loss.item()) * int(ntoks.item())
        count += int(ntoks.item())
    model.train()
    return total / max(count, 1)
