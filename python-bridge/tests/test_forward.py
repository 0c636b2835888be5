"""The split forward pass (frozen prefix | adapted blocks | head) is mlx-lm's loss, exactly."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx_lm import load
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import linear_to_lora_layers

from tunelab_bridge.forward import make_loss


def test_split_loss_and_gradients_match_default_loss(tiny_model_dir):
    model, _ = load(str(tiny_model_dir))
    model.set_dtype(mx.float32)
    model.freeze()
    mx.random.seed(1)
    linear_to_lora_layers(model, 2, {"rank": 4, "scale": 10.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "mlp.down_proj"]})
    # Non-zero B so that the adapted blocks matter to the loss.
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.1
    batch = mx.random.randint(0, 300, (2, 20))
    lengths = mx.array([[3, 20], [5, 14]])

    split = make_loss(model, 2)
    assert split is not default_loss
    (ref, ref_n), ref_grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    (got, got_n), got_grads = nn.value_and_grad(model, split)(model, batch, lengths)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert got_n.item() == ref_n.item()
    from mlx.utils import tree_flatten

    ref_flat, got_flat = dict(tree_flatten(ref_grads)), dict(tree_flatten(got_grads))
    assert ref_flat.keys() == got_flat.keys() and len(ref_flat) == 8
    for key in ref_flat:
        assert mx.allclose(ref_flat[key], got_flat[key], rtol=1e-4, atol=1e-6).item(), key
