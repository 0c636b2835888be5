"""TrainableSlots reads a model's trainable arrays and rebuilds their tree exactly as
`model.trainable_parameters()` has it, also after the optimizer replaced the arrays."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from fast_reference import prepare
from tunelab_bridge.parameter_slots import TrainableSlots


def same_tree(a, b) -> bool:
    """Same containers, keys and list lengths all the way down, leaves compared by identity."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_tree(x, y) for x, y in zip(a, b))
    return a is b


def test_tree_and_arrays_match_trainable_parameters_before_and_after_an_update() -> None:
    model = prepare(6, 2, keys=["self_attn.q_proj", "mlp.down_proj"])
    model.model.layers[1].input_layernorm.unfreeze()  # a trainable array outside the adapters too
    slots = TrainableSlots(model)
    assert len(slots.paths) == 2 * 2 * 2 + 1
    assert same_tree(slots.tree(slots.arrays()), model.trainable_parameters())

    optimizer = optim.Adam(learning_rate=1e-2)
    grads = slots.tree([mx.ones_like(a) for a in slots.arrays()])
    optimizer.update(model, grads)
    mx.eval(model.parameters())
    # The arrays were replaced inside the same modules: the slots read the new ones.
    assert same_tree(slots.tree(slots.arrays()), model.trainable_parameters())
    assert [k for k, _ in tree_flatten(grads)] == [k for k, _ in tree_flatten(model.trainable_parameters())]


def test_a_list_of_arrays_inside_a_module() -> None:
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.pieces = [mx.zeros((2,)), mx.ones((3,))]
            self.frozen = mx.zeros((4,))
            self.freeze(keys=["frozen"])

    model = Holder()
    slots = TrainableSlots(model)
    assert slots.paths == ["pieces.0", "pieces.1"]
    assert same_tree(slots.tree(slots.arrays()), model.trainable_parameters())
