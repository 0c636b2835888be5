"""Checkpoints of a run: the adapter, the optimizer's state and where training was, written so
that a resumed run replays the exact loss trajectory (batches are a function of seed and step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .files import atomic_write_json, read_json, save_arrays
from .runs import RunDir


def _flat_assign(tree: Any, flat: Mapping[str, Any], prefix: str = "") -> Any:
    """Put saved leaves back into a freshly initialised optimizer state of the same shape."""
    if isinstance(tree, dict):
        return {k: _flat_assign(v, flat, f"{prefix}{k}.") for k, v in tree.items()}
    if isinstance(tree, list):
        return [_flat_assign(v, flat, f"{prefix}{i}.") for i, v in enumerate(tree)]
    key = prefix[:-1]
    return flat.get(key, tree)


class Checkpoints:
    def __init__(self, run: RunDir):
        self.run = run

    def save(self, step: int, model: Any, optimizer: Any, extra: Mapping[str, Any]) -> Path:
        from mlx.utils import tree_flatten

        adapters_file, optimizer_file, state_file = self.run.checkpoint_files(step)
        save_arrays(adapters_file, dict(tree_flatten(model.trainable_parameters())))
        save_arrays(optimizer_file, dict(tree_flatten(optimizer.state)))
        # state.json last: its presence marks the checkpoint complete.
        atomic_write_json(state_file, {"step": step, **extra})
        return adapters_file

    def restore(self, step: int, model: Any, optimizer: Any) -> dict[str, Any]:
        import mlx.core as mx

        adapters_file, optimizer_file, state_file = self.run.checkpoint_files(step)
        model.load_weights(list(mx.load(str(adapters_file)).items()), strict=False)
        optimizer.init(model.trainable_parameters())
        optimizer.state = _flat_assign(optimizer.state, mx.load(str(optimizer_file)))
        mx.eval(model.trainable_parameters(), optimizer.state)
        return read_json(state_file) or {}
