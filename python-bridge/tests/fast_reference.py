"""Shared by the fast-path tests: a tiny llama built in the test, and two training loops over the
same public mlx-lm pieces, one with mlx-lm's own loss and one with the fast path."""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.models import llama, qwen2
from mlx_lm.tuner.trainer import default_loss, iterate_batches
from mlx_lm.tuner.utils import linear_to_lora_layers

from tunelab_bridge import fast

VOCAB = 97


def tiny_model(num_blocks: int = 6, seed: int = 0, model_type: str = "llama") -> nn.Module:
    """A tiny llama, or ("qwen2") the same sizes as a qwen2: biases on q/k/v, no head_dim field."""
    mx.random.seed(seed)
    sizes = dict(
        hidden_size=48,
        num_hidden_layers=num_blocks,
        intermediate_size=96,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        vocab_size=VOCAB,
        tie_word_embeddings=True,
    )
    if model_type == "qwen2":
        model = qwen2.Model(qwen2.ModelArgs(model_type="qwen2", **sizes))
    else:
        model = llama.Model(llama.ModelArgs(model_type="llama", **sizes))
    mx.eval(model.parameters())
    return model


def dataset(count: int = 7, seed: int = 1, mask_prompt: bool = True) -> List[Tuple[List[int], int]]:
    """(tokens, offset) rows of different lengths, as mlx-lm's datasets yield them."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        prompt = rng.integers(3, VOCAB, size=int(rng.integers(5, 20))).tolist()
        answer = rng.integers(3, VOCAB, size=int(rng.integers(3, 12))).tolist()
        rows.append((prompt + answer, len(prompt) if mask_prompt else 0))
    return rows


def prepare(num_blocks: int, layers: int, dropout: float = 0.0, keys: Optional[List[str]] = None, model_type: str = "llama") -> nn.Module:
    model = tiny_model(num_blocks, model_type=model_type)
    model.freeze()
    config = {"rank": 4, "scale": 10.0, "dropout": dropout}
    if keys:
        config["keys"] = keys
    mx.random.seed(42)
    linear_to_lora_layers(model, layers, config)
    model.train()
    return model


StepFn = Callable[[mx.array, mx.array], Tuple[mx.array, mx.array, dict]]


def train(model: nn.Module, step: StepFn, data, batch_size: int, steps: int, max_seq_length: int = 2048, lr: float = 1e-3) -> Tuple[List[float], dict]:
    optimizer = optim.Adam(learning_rate=lr)
    losses = []
    mx.random.seed(7)
    batches = iterate_batches(data, batch_size, max_seq_length, loop=True, seed=3)
    for _, (batch, lengths) in zip(range(steps), batches):
        loss, ntoks, grads = step(batch, lengths)
        grads, _ = optim.clip_grad_norm(grads, 1.0)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state, loss, ntoks)
        losses.append(loss.item())
    return losses, dict(tree_flatten(model.trainable_parameters()))


def reference_step(model: nn.Module) -> StepFn:
    value_and_grad = nn.value_and_grad(model, default_loss)

    def step(batch, lengths):
        (loss, ntoks), grads = value_and_grad(model, batch, lengths)
        return loss, ntoks, grads

    return step


def fast_step(model: nn.Module, options: fast.FastOptions, data=None, max_seq_length: int = 2048) -> Tuple[StepFn, fast.FastPlan, fast.FastLossFn]:
    fast_plan = fast.plan(model, options)
    loss_fn = fast.FastLossFn(model, fast_plan)
    if data is not None:
        loss_fn.precompute([tokens[:max_seq_length] for tokens, _ in data])
    return loss_fn.loss_and_grad, fast_plan, loss_fn
