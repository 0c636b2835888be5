"""The training loop, in the spirit of mlx-lm's trainer: steps until `iters` or a cancel, with
reporting, validation and checkpoints on their schedule, stopping at the first non-finite step.

The loop knows nothing about models, files or events: the step, the reporter, validation and
checkpoints are given to it (training.py wires them).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from .reporting import Reporter
from .steps import StepOutcome


@dataclass
class Totals:
    """What a run has done so far; saved with each checkpoint, so a resumed run goes on counting."""

    first_loss: Optional[float] = None
    last_loss: Optional[float] = None
    trained_tokens: int = 0
    train_seconds: float = 0.0

    @staticmethod
    def restored(saved: Dict[str, Any]) -> "Totals":
        return Totals(saved.get("first_loss"), saved.get("last_loss"), int(saved.get("trained_tokens", 0)), float(saved.get("train_seconds", 0.0)))

    def as_dict(self) -> Dict[str, Any]:
        return {"first_loss": self.first_loss, "last_loss": self.last_loss, "trained_tokens": self.trained_tokens, "train_seconds": self.train_seconds}


@dataclass
class Schedule:
    iters: int
    steps_per_eval: Optional[int] = None  # None: validation before and after only
    save_every: int = 0  # 0: no checkpoints between the first and the last step


@dataclass
class LoopEnd:
    status: str  # "completed" | "interrupted" | "diverged"
    step: int
    totals: Totals = field(default_factory=Totals)
    diverged: Optional[StepOutcome] = None
    val_loss: Optional[float] = None  # the last validation pass's (set by the caller, which validates)


def train_loop(
    step_fn: Callable[[int], StepOutcome],
    *,
    start: int,
    schedule: Schedule,
    totals: Totals,
    reporter: Reporter,
    learning_rate: Callable[[], float],
    cancelled: Callable[[], bool],
    validate: Callable[[int], None],
    checkpoint: Callable[[int, Totals], None],
) -> LoopEnd:
    """Runs steps start+1 .. schedule.iters. `step_fn(n)` trains step n (1-based) and returns its
    outcome; a step whose loss or gradient norm is not finite ends the loop unapplied."""
    step = start
    if start == 0:
        validate(0)
    while step < schedule.iters:
        if cancelled():
            return LoopEnd("interrupted", step, totals)
        tic = time.perf_counter()
        outcome = step_fn(step + 1)
        seconds = time.perf_counter() - tic
        if not (math.isfinite(outcome.loss) and math.isfinite(outcome.grad_norm)):
            return LoopEnd("diverged", step, totals, outcome)
        step += 1
        totals.train_seconds += seconds
        totals.trained_tokens += outcome.tokens
        totals.first_loss = outcome.loss if totals.first_loss is None else totals.first_loss
        totals.last_loss = outcome.loss
        reporter.step(step, outcome, seconds, totals.trained_tokens, learning_rate())
        if step == schedule.iters:
            break
        if schedule.steps_per_eval and step % schedule.steps_per_eval == 0:
            validate(step)
        if schedule.save_every and step % schedule.save_every == 0:
            checkpoint(step, totals)
    if step > start:
        validate(step)
    return LoopEnd("completed", step, totals)
