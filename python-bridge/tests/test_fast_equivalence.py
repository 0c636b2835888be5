"""The fast path trains exactly like mlx-lm's own step: per-step losses and final adapter weights
agree over 20+ steps with each optimisation on and off, across --layers, --batch-size, masking
and truncation settings, on a tiny llama built here."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from fast_reference import dataset, fast_step, prepare, reference_step, train
from tunelab_bridge import fast

STEPS = 20
ALL_ON = fast.FastOptions(compile=True)  # compile is opt-in; the default is every other one
NONE = dict(prefix_cache=False, loss_head=False, tail_queries=False, trim_padding=False, host_activations=False, fused_head=False, native_linears=False, host_attention=False, host_step=False, compile=False)
# The host step needs every host piece under it; alone among them it means "all host pieces,
# through MLX's autodiff" (host_step=False) versus "written out" (True).
HOST_PIECES = dict(loss_head=True, host_activations=True, fused_head=True, native_linears=True, host_attention=True)
EACH_ALONE = {
    "prefix-cache": fast.FastOptions(**{**NONE, "prefix_cache": True}),
    "loss-head": fast.FastOptions(**{**NONE, "loss_head": True}),
    "tail-queries": fast.FastOptions(**{**NONE, "loss_head": True, "tail_queries": True}),
    "trim-padding": fast.FastOptions(**{**NONE, "trim_padding": True}),
    "host-activations": fast.FastOptions(**{**NONE, "host_activations": True}),
    "fused-head": fast.FastOptions(**{**NONE, "loss_head": True, "fused_head": True}),
    "native-linears": fast.FastOptions(**{**NONE, "native_linears": True}),
    "host-attention": fast.FastOptions(**{**NONE, "host_attention": True}),
    "host-pieces-autodiff": fast.FastOptions(**{**NONE, **HOST_PIECES}),
    "host-step": fast.FastOptions(**{**NONE, **HOST_PIECES, "host_step": True}),
    "compile": fast.FastOptions(**{**NONE, "compile": True}),
    "all-but-compile": fast.FastOptions(compile=False),
    "default": fast.FastOptions(),
    "all": ALL_ON,
}


def assert_same_training(reference, candidate, weights_atol: float = 2e-5) -> None:
    ref_losses, ref_weights = reference
    losses, weights = candidate
    assert len(losses) == len(ref_losses) >= STEPS
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-5)
    assert ref_weights.keys() == weights.keys()
    for key in ref_weights:
        np.testing.assert_allclose(np.array(weights[key]), np.array(ref_weights[key]), rtol=1e-3, atol=weights_atol, err_msg=key)
    # The run must actually have trained, or "equal" would prove nothing.
    assert ref_losses[-1] < ref_losses[0]


def run_pair(*, layers, batch_size, mask_prompt=True, options=ALL_ON, max_seq_length=2048, dropout=0.0, blocks=6, tweak=None, model_type="llama"):
    data = dataset(9, mask_prompt=mask_prompt)
    model = prepare(blocks, layers, dropout=dropout, model_type=model_type)
    if tweak:
        tweak(model)
    reference = train(model, reference_step(model), data, batch_size, STEPS, max_seq_length)
    model = prepare(blocks, layers, dropout=dropout, model_type=model_type)
    if tweak:
        tweak(model)
    step, plan, loss_fn = fast_step(model, options, data, max_seq_length)
    candidate = train(model, step, data, batch_size, STEPS, max_seq_length)
    return reference, candidate, plan, loss_fn


@pytest.mark.parametrize("name", list(EACH_ALONE))
def test_each_optimisation_alone_and_together(name: str) -> None:
    reference, candidate, plan, _ = run_pair(layers=2, batch_size=2, options=EACH_ALONE[name])
    assert_same_training(reference, candidate)
    wanted = EACH_ALONE[name]
    assert plan.prefix_cache.applies == wanted.prefix_cache
    assert plan.loss_head.applies == wanted.loss_head
    assert plan.tail_queries.applies == wanted.tail_queries
    assert plan.trim_padding.applies == wanted.trim_padding
    assert plan.compile.applies == wanted.compile
    # Host activations need the uncompiled step (a host computation cannot be traced).
    assert plan.host_activations.applies == (wanted.host_activations and not wanted.compile)
    # The fused head takes the loss-position rows (and, here, finds its kernel and a float32 head).
    assert plan.fused_head.applies == (wanted.fused_head and wanted.loss_head), plan.fused_head.reason
    # Native frozen projections, like host activations, need the uncompiled step.
    assert plan.native_linears.applies == (wanted.native_linears and not wanted.compile), plan.native_linears.reason
    # Host RoPE + attention, likewise (the tiny llama's rope is the supported nn.RoPE kind).
    assert plan.host_attention.applies == (wanted.host_attention and not wanted.compile), plan.host_attention.reason
    # The written-out step, wherever all the host pieces are on (here, no dropout and LoRA only).
    host_pieces = all(getattr(wanted, name) for name in HOST_PIECES) and not wanted.compile
    assert plan.host_step.applies == (wanted.host_step and host_pieces), plan.host_step.reason


@pytest.mark.parametrize("options", ["all", "default"])
@pytest.mark.parametrize(
    "layers,batch_size,mask_prompt",
    [(1, 1, True), (2, 3, True), (4, 1, False), (3, 4, False), (5, 2, True)],
)
def test_layers_batch_sizes_and_masking(layers: int, batch_size: int, mask_prompt: bool, options: str) -> None:
    # "all" compiles the step (host pieces off); "default" is the written-out host step.
    reference, candidate, plan, loss_fn = run_pair(layers=layers, batch_size=batch_size, mask_prompt=mask_prompt, options=EACH_ALONE[options])
    assert_same_training(reference, candidate)
    assert plan.host_step.applies == (options == "default"), plan.host_step.reason
    assert plan.prefix_cache.applies and plan.first_adapted_block == 6 - layers
    stats = loss_fn.cache.stats
    assert stats.cached == 9 and stats.misses == 0 and stats.hits == STEPS * batch_size


def test_host_step_with_adapters_on_every_projection_and_block() -> None:
    # LoRA on all seven projections (k, o and the MLP's too) of every block: no frozen prefix, so
    # the host step starts at the embedding, and every block passes its input's gradient down.
    keys = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    data = dataset(9)
    model = prepare(6, 6, keys=keys)
    reference = train(model, reference_step(model), data, 2, STEPS)
    model = prepare(6, 6, keys=keys)
    step, plan, _ = fast_step(model, fast.FastOptions(), data)
    candidate = train(model, step, data, 2, STEPS)
    assert_same_training(reference, candidate)
    assert plan.host_step.applies and not plan.prefix_cache.applies, plan.host_step.reason


@pytest.mark.parametrize("options", ["default", "all"])
def test_qwen2_blocks_with_their_q_k_v_biases(options: str) -> None:
    # The reference reproduction's model family: llama's block code with biased q/k/v projections.
    reference, candidate, plan, _ = run_pair(layers=2, batch_size=2, options=EACH_ALONE[options], model_type="qwen2")
    assert_same_training(reference, candidate)
    assert plan.prefix_cache.applies and plan.tail_queries.applies
    assert plan.host_step.applies == (options == "default"), plan.host_step.reason
    if options == "default":
        assert plan.native_linears.applies and plan.host_attention.applies and plan.fused_head.applies


def test_truncation_to_max_seq_length() -> None:
    reference, candidate, _, _ = run_pair(layers=2, batch_size=2, max_seq_length=24)
    assert_same_training(reference, candidate)


def test_budget_caches_what_fits_and_computes_the_rest() -> None:
    reference, candidate, plan, loss_fn = run_pair(layers=2, batch_size=1, options=fast.FastOptions(prefix_cache_mb=0.012))
    # One row per step makes Adam's steps here the most sensitive of these runs to float32
    # rounding: even the unfused path ends ~2e-5 away on weights near zero (the fused head, whose
    # sums run in another order, ~2.8e-5). 5e-5 is 5% of a single step at lr 1e-3.
    assert_same_training(reference, candidate, weights_atol=5e-5)
    stats = loss_fn.cache.stats
    assert plan.prefix_cache.applies
    assert 0 < stats.cached < 9 and stats.skipped_over_budget > 0 and stats.misses > 0
    assert stats.bytes <= 0.012 * 2**20


def test_dropout_in_adapted_blocks_keeps_the_same_random_draws() -> None:
    reference, candidate, plan, _ = run_pair(layers=2, batch_size=2, dropout=0.2)
    assert_same_training(reference, candidate)
    assert plan.prefix_cache.applies and plan.loss_head.applies
    assert not plan.trim_padding.applies and "dropout" in plan.trim_padding.reason
    assert not plan.compile.applies and "dropout" in plan.compile.reason
    assert not plan.tail_queries.applies and "dropout" in plan.tail_queries.reason


def test_rows_with_other_tokens_are_never_served_from_the_cache() -> None:
    data = dataset(9)
    model = prepare(6, 2)
    reference = train(model, reference_step(model), data, 1, STEPS)
    model = prepare(6, 2)
    # Precompute for different sequences of the same lengths: every training row must miss.
    decoys = [[(t + 1) % 97 for t in tokens] for tokens, _ in data]
    step, _, loss_fn = fast_step(model, ALL_ON)
    loss_fn.precompute(decoys)
    candidate = train(model, step, data, 1, STEPS)
    assert_same_training(reference, candidate)
    assert loss_fn.cache.stats.misses == 9 and loss_fn.cache.stats.hits == STEPS - 9


def test_drop_in_signatures_match_mlx_lm() -> None:
    from mlx_lm.tuner.trainer import default_loss, iterate_batches
    import mlx.nn as nn

    data = dataset(5)
    model = prepare(6, 2)
    loss_fn = fast.FastLossFn(model, fast.plan(model))
    batch, lengths = next(iterate_batches(data, 2, 2048))
    (loss, ntoks), grads = loss_fn.value_and_grad(model, batch, lengths)
    (ref_loss, ref_ntoks), ref_grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    assert int(ntoks.item()) == int(ref_ntoks.item())
    assert abs(loss.item() - ref_loss.item()) < 1e-5
    val_loss, val_ntoks = loss_fn.loss_fn(model, batch, lengths)
    assert abs(val_loss.item() - ref_loss.item()) < 1e-5 and int(val_ntoks.item()) == int(ref_ntoks.item())
    from mlx.utils import tree_flatten

    assert [k for k, _ in tree_flatten(grads)] == [k for k, _ in tree_flatten(ref_grads)]
    mx.eval(grads)


# Each strategy class, with its gradients made slightly wrong, must fail the equivalence check:
# the matrix above would notice a fault in any of them. (An offset, not a factor: Adam divides
# each gradient by its own running magnitude, and clipping rescales, so a scaled gradient
# trains the same.)
STRATEGY_RUNS = {
    "AutodiffStep": fast.FastOptions(**{**NONE, **HOST_PIECES}),
    "CompiledStep": fast.FastOptions(**{**NONE, "compile": True}),
    "HostStepPlan": fast.FastOptions(),
}


@pytest.mark.parametrize("strategy", list(STRATEGY_RUNS))
def test_each_strategy_is_the_one_run_and_a_fault_in_it_is_caught(strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlx.utils import tree_map

    from tunelab_bridge.fast import strategies

    reference, candidate, _, loss_fn = run_pair(layers=2, batch_size=2, options=STRATEGY_RUNS[strategy])
    assert type(loss_fn.strategy).__name__ == strategy
    assert_same_training(reference, candidate)

    cls = getattr(strategies, strategy)
    exact = cls.value_and_grad

    def faulty(self, args):
        (loss, ntoks), grads = exact(self, args)
        return (loss, ntoks), tree_map(lambda g: g + 1e-4, grads)

    monkeypatch.setattr(cls, "value_and_grad", faulty)
    _, mutated, _, _ = run_pair(layers=2, batch_size=2, options=STRATEGY_RUNS[strategy])
    with pytest.raises(AssertionError):
        assert_same_training(reference, mutated)


def test_a_fault_in_the_shared_host_arithmetic_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab_bridge.fast import host_math

    exact = host_math.swiglu_backward
    # SwiGLU's backward with a 1% error in d/dgate, in the one copy both host strategies share.
    monkeypatch.setattr(host_math, "swiglu_backward", lambda partials, d_out: (1.01 * exact(partials, d_out)[0], exact(partials, d_out)[1]))
    reference, candidate, _, loss_fn = run_pair(layers=2, batch_size=2, options=STRATEGY_RUNS["HostStepPlan"])
    assert type(loss_fn.strategy).__name__ == "HostStepPlan"
    with pytest.raises(AssertionError):
        assert_same_training(reference, candidate)
