"""Where a run's numbers go: a `progress` event for the notebook and a line in metrics.jsonl,
every `steps_per_report` steps, averaged over the steps since the last report (the reporter
keeps those windows); validation losses likewise. Only one process of a group reports
(metrics None on the others)."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional

from .runs import MetricsLog
from .steps import StepOutcome

Emit = Callable[[str, Mapping[str, Any]], None]


class Reporter:
    def __init__(self, emit: Emit, metrics: Optional[MetricsLog], *, iters: int, steps_per_report: int, started: float):
        self.emit = emit
        self.metrics = metrics
        self.iters = iters
        self.every = steps_per_report
        self.started = started
        self._window = (0.0, 0, 0, 0.0)  # loss sum, tokens, steps, seconds since the last report

    def step(self, step: int, outcome: StepOutcome, seconds: float, trained_tokens: int, learning_rate: float) -> None:
        """Counts one finished step; reports the window when `step` closes it (or ends the run)."""
        loss, tokens, steps, elapsed = self._window
        loss, tokens, steps, elapsed = loss + outcome.loss, tokens + outcome.tokens, steps + 1, elapsed + seconds
        if step % self.every and step != self.iters:
            self._window = (loss, tokens, steps, elapsed)
            return
        self._window = (0.0, 0, 0, 0.0)
        import mlx.core as mx

        info = {
            "step": step,
            "iters": self.iters,
            "loss": loss / steps,
            "lr": learning_rate,
            "it_per_s": steps / elapsed if elapsed > 0 else None,
            "tokens_per_s": tokens / elapsed if elapsed > 0 else None,
            "trained_tokens": trained_tokens,
            "peak_memory_gb": mx.get_peak_memory() / 1e9,
            "elapsed_s": time.perf_counter() - self.started,
        }
        if self.metrics is not None:
            self.metrics.write({"type": "train", **info})
        self.emit("progress", info)

    def val(self, step: int, val_loss: float) -> None:
        if self.metrics is not None:
            self.metrics.write({"type": "val", "step": step, "val_loss": val_loss})
        self.emit("val", {"step": step, "val_loss": val_loss})
