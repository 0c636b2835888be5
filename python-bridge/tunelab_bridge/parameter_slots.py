"""Where a model's trainable arrays live, found once per run.

`Module.trainable_parameters()` walks every submodule and filters every array (~1 ms on SmolLM2's 30
blocks), and a training step used to call it, or map over its tree, three times: ~3 ms of a ~45 ms
CPU step. The tree's shape does not change during a run (the optimizer replaces the arrays inside
the same modules), so it is read once: each trainable array's container and key, and a builder
that makes a tree of that shape from a list of leaves.
"""

from __future__ import annotations

from itertools import count
from typing import Any, Callable, Iterator, List, Tuple

from mlx.utils import tree_flatten


class TrainableSlots:
    def __init__(self, model: Any):
        tree = model.trainable_parameters()
        self.paths: List[str] = [path for path, _ in tree_flatten(tree)]
        # (container, key) of each trainable array, in tree_flatten's order.
        self.slots: List[Tuple[Any, Any]] = [_resolve(model, path) for path in self.paths]
        self._build = _builder(tree, count())

    def arrays(self) -> list:
        """The current trainable arrays, in tree_flatten's order."""
        return [container[key] for container, key in self.slots]

    def tree(self, leaves: list) -> Any:
        """A tree shaped like `model.trainable_parameters()` (what `nn.value_and_grad` returns as
        gradients) with `leaves` in tree_flatten's order."""
        return self._build(leaves)


def _resolve(model: Any, path: str) -> Tuple[Any, Any]:
    node = model
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
    return node, int(last) if isinstance(node, (list, tuple)) else last


def _builder(node: Any, leaf_index: Iterator[int]) -> Callable[[list], Any]:
    if isinstance(node, dict):
        parts = [(key, _builder(child, leaf_index)) for key, child in node.items()]
        return lambda leaves: {key: build(leaves) for key, build in parts}
    if isinstance(node, (list, tuple)):
        items = [_builder(child, leaf_index) for child in node]
        kind = type(node)
        return lambda leaves: kind(build(leaves) for build in items)
    i = next(leaf_index)
    return lambda leaves: leaves[i]
