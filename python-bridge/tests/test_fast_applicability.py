"""The fast path switches itself off, with a reason, wherever it would not be exact, and then
trains exactly like mlx-lm's own step."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx_lm.tuner.lora import LoRALinear

from fast_reference import dataset, fast_step, prepare, reference_step, train
from test_fast_equivalence import STEPS, assert_same_training, run_pair
from tunelab_bridge import fast
from tunelab_bridge.fast.bucketing import layout


def test_adapters_in_every_block_leave_nothing_to_cache() -> None:
    reference, candidate, plan, loss_fn = run_pair(layers=6, batch_size=2)
    assert not plan.prefix_cache.applies and "first block" in plan.prefix_cache.reason
    assert loss_fn.cache is None
    assert plan.summary()["prefix_cache"]["used"] is False
    assert_same_training(reference, candidate)


def frozen_dropout_in_block_one(model) -> None:
    attn = model.model.layers[1].self_attn
    attn.k_proj = LoRALinear.from_base(attn.k_proj, r=2, dropout=0.3, scale=1.0)
    attn.k_proj.freeze()


def test_dropout_below_the_first_adapted_block_turns_the_cache_off() -> None:
    reference, candidate, plan, loss_fn = run_pair(layers=2, batch_size=2, tweak=frozen_dropout_in_block_one)
    assert not plan.prefix_cache.applies
    assert "dropout" in plan.prefix_cache.reason and "block 4" in plan.prefix_cache.reason
    assert loss_fn.cache is None
    assert_same_training(reference, candidate)


def test_no_prefix_cache_flag() -> None:
    model = prepare(6, 2)
    plan = fast.plan(model, fast.FastOptions(prefix_cache=False))
    assert not plan.prefix_cache.applies and "--no-prefix-cache" in plan.prefix_cache.reason
    assert fast.FastLossFn(model, plan).precompute([[1, 2, 3]]) is None
    plan = fast.plan(model, fast.FastOptions(prefix_cache_mb=0))
    assert not plan.prefix_cache.applies and "0 MB" in plan.prefix_cache.reason


def test_a_trained_embedding_turns_the_cache_off() -> None:
    def train_embedding(model) -> None:
        model.model.embed_tokens.unfreeze()

    reference, candidate, plan, _ = run_pair(layers=2, batch_size=1, tweak=train_embedding)
    assert not plan.prefix_cache.applies and "embedding" in plan.prefix_cache.reason
    assert_same_training(reference, candidate)


def test_an_unknown_architecture_falls_back_to_mlx_lm_loss() -> None:
    def disguise(model) -> None:
        model.model_type = "mystery"

    reference, candidate, plan, loss_fn = run_pair(layers=2, batch_size=2, tweak=disguise)
    assert not plan.any and "mystery" in plan.prefix_cache.reason
    assert loss_fn.cache is None
    assert_same_training(reference, candidate)


def test_precompute_reports_progress_to_the_end() -> None:
    model = prepare(6, 2)
    loss_fn = fast.FastLossFn(model, fast.plan(model))
    seen = []
    stats = loss_fn.precompute([tokens for tokens, _ in dataset(40)], progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 40) and seen[-1] == (40, 40)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert stats.cached == 40 and stats.bytes == sum(len(t) for t, _ in dataset(40)) * 48 * 4


def test_layout_counts_only_loss_positions() -> None:
    batch = np.zeros((2, 33), dtype=np.int32)
    batch[0, :10] = np.arange(1, 11)
    batch[1, :20] = np.arange(1, 21)
    lengths = np.array([[4, 10], [15, 20]])
    lay = layout(batch, lengths, trim=True, loss_positions_only=True)
    assert lay.tail_start == 0
    # mlx-lm counts target j when offset <= j + 1 <= length: 7 + 6 positions.
    assert lay.ntoks == 13
    assert lay.width == 24  # longest row (20) rounded up to the bucket
    assert lay.weights.sum() == 13 and len(lay.positions) == 16
    counted = lay.positions[lay.weights > 0]
    assert list(counted[:7]) == [3, 4, 5, 6, 7, 8, 9]
    assert list(counted[7:]) == [24 + j for j in range(14, 20)]
    tail = layout(batch, lengths, trim=True, loss_positions_only=True, tail_queries=True)
    # The first counted position is j = 3, so the last block runs from 0 (bucket floor); without
    # buckets it starts exactly at 3 and positions are relative to it.
    assert tail.tail_start == 0
    exact = layout(batch, lengths, trim=False, loss_positions_only=True, tail_queries=True)
    assert exact.tail_start == 3 and exact.width == 32
    assert list(exact.positions[:7]) == list(range(0, 7)) and exact.positions[7] == 29 + 11
    full = layout(batch, lengths, trim=False, loss_positions_only=False)
    assert full.width == 32 and full.weights.sum() == 13 and len(full.positions) == 64
    # The uncompiled step takes exact sizes: no filler positions, the last block from j = 3.
    exact_sizes = layout(batch, lengths, trim=True, loss_positions_only=True, tail_queries=True, bucket=1)
    assert exact_sizes.width == 20 and len(exact_sizes.positions) == 13 and exact_sizes.weights.all()
    assert exact_sizes.tail_start == 3 and exact_sizes.positions[7] == 17 + 11


def test_host_activations_need_the_cpu_and_an_untraced_step() -> None:
    model = prepare(6, 2)
    assert fast.plan(model).host_activations.applies
    compiled = fast.plan(model, fast.FastOptions(compile=True)).host_activations
    assert not compiled.applies and "traced" in compiled.reason
    switched_off = fast.plan(model, fast.FastOptions(host_activations=False)).host_activations
    assert not switched_off.applies and switched_off.reason


def test_host_swiglu_matches_mlx_lm_values_and_gradients() -> None:
    from mlx_lm.models.activations import swiglu

    from tunelab_bridge.fast.host_ops import swiglu as host_swiglu

    gate = mx.random.normal((2, 7, 48)) * 4
    up = mx.random.normal((2, 7, 48))
    cotangent = mx.random.normal((2, 7, 48))
    reference = mx.vjp(lambda g, u: swiglu(g, u), [gate, up], [cotangent])
    candidate = mx.vjp(lambda g, u: host_swiglu(g, u), [gate, up], [cotangent])
    for ref, got in zip([*reference[0], *reference[1]], [*candidate[0], *candidate[1]]):
        np.testing.assert_allclose(np.array(got), np.array(ref), rtol=1e-5, atol=1e-6)


def test_fused_head_is_used_by_default_on_the_cpu() -> None:
    decision = fast.plan(prepare(6, 2)).fused_head
    assert decision.applies and "one native pass" in decision.reason
    assert not fast.plan(prepare(6, 2), fast.FastOptions(fused_head=False)).fused_head.applies
    needs_head = fast.plan(prepare(6, 2), fast.FastOptions(loss_head=False)).fused_head
    assert not needs_head.applies and "loss-position head" in needs_head.reason


def test_native_linears_are_used_by_default_and_off_under_compile() -> None:
    decision = fast.plan(prepare(6, 2)).native_linears
    assert decision.applies and "blocks 4-5" in decision.reason
    compiled = fast.plan(prepare(6, 2), fast.FastOptions(compile=True)).native_linears
    assert not compiled.applies and "cannot be traced" in compiled.reason
    assert fast.plan(prepare(6, 2), fast.FastOptions(compile=True)).summary()["native_linears"]["used"] is False
    assert not fast.plan(prepare(6, 2), fast.FastOptions(native_linears=False)).native_linears.applies


def test_host_attention_is_used_by_default_and_off_under_compile() -> None:
    plan = fast.plan(prepare(6, 2))
    assert plan.host_attention.applies and "blocks 4-5" in plan.host_attention.reason
    compiled = fast.plan(prepare(6, 2), fast.FastOptions(compile=True))
    assert not compiled.host_attention.applies and "cannot be traced" in compiled.host_attention.reason
    assert compiled.summary()["host_attention"]["used"] is False
    assert not fast.plan(prepare(6, 2), fast.FastOptions(host_attention=False)).host_attention.applies


def test_host_attention_off_for_a_traditional_rope_and_training_stays_exact() -> None:
    import mlx.nn as nn

    def traditional_rope_in_block_five(model) -> None:
        attn = model.model.layers[5].self_attn
        attn.rope = nn.RoPE(attn.rope.dims, traditional=True, base=attn.rope.base)

    model = prepare(6, 2)
    traditional_rope_in_block_five(model)
    decision = fast.plan(model).host_attention
    assert not decision.applies and "rotary embedding" in decision.reason
    reference, candidate, plan, loss_fn = run_pair(layers=2, batch_size=2, tweak=traditional_rope_in_block_five)
    assert not plan.host_attention.applies and not loss_fn.runner.host_attention
    assert_same_training(reference, candidate)


def test_host_attention_off_for_half_precision_blocks() -> None:
    model = prepare(6, 2)
    model.set_dtype(mx.float16)
    decision = fast.plan(model).host_attention
    assert not decision.applies and "float16" in decision.reason


def test_native_linears_and_the_host_step_take_a_frozen_bias_and_training_stays_exact() -> None:
    import mlx.nn as nn

    from tunelab_bridge.fast.frozen_linear import base_linear

    def bias_on_an_mlp_projection(model) -> None:
        mlp = model.model.layers[5].mlp
        out_features, in_features = base_linear(mlp.up_proj).weight.shape
        mx.random.seed(7)  # the same layer in both runs
        mlp.up_proj = nn.Linear(in_features, out_features, bias=True)
        mlp.up_proj.freeze()

    reference, candidate, plan, _ = run_pair(layers=2, batch_size=2, options=fast.FastOptions(), tweak=bias_on_an_mlp_projection)
    assert plan.native_linears.applies and plan.host_step.applies, plan.native_linears.reason
    assert_same_training(reference, candidate)

    # A trained bias is not frozen: the kernels keep a copy for the whole run, so they step aside.
    model = prepare(6, 2)
    bias_on_an_mlp_projection(model)
    model.model.layers[5].mlp.up_proj.unfreeze(keys=["bias"])
    decision = fast.plan(model).native_linears
    assert not decision.applies and "bias in the adapted blocks is trained" in decision.reason


def test_fused_head_off_when_the_kernels_cannot_be_built(monkeypatch) -> None:
    from tunelab_bridge.fast import host_kernels

    why = "the host kernels could not be built: g++ not found; install g++ and run npm run setup"
    monkeypatch.setattr(host_kernels, "load", lambda: (None, why))
    reference, candidate, plan, loss_fn = run_pair(layers=2, batch_size=2, options=fast.FastOptions())
    assert not plan.fused_head.applies and plan.fused_head.reason == why
    assert plan.summary()["fused_head"] == {"used": False, "reason": why, "detail": None}
    assert_same_training(reference, candidate)


def test_fused_head_off_for_a_quantized_or_half_precision_head() -> None:
    import mlx.nn as nn
    from mlx_lm.models import llama

    def model_with_hidden_64() -> nn.Module:
        args = llama.ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                               num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=97, tie_word_embeddings=True)
        model = llama.Model(args)
        model.freeze()
        return model

    quantized = model_with_hidden_64()
    nn.quantize(quantized, group_size=32, bits=4)
    assert isinstance(quantized.model.embed_tokens, nn.QuantizedEmbedding)
    decision = fast.plan(quantized).fused_head
    assert not decision.applies and "quantized" in decision.reason

    half = model_with_hidden_64()
    half.set_dtype(mx.bfloat16)
    decision = fast.plan(half).fused_head
    assert not decision.applies and "bfloat16" in decision.reason and "float32" in decision.reason


def test_fused_head_reads_an_untied_lm_head_and_stays_off_while_it_trains() -> None:
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama
    from mlx_lm.tuner.trainer import default_loss, iterate_batches
    from mlx_lm.tuner.utils import linear_to_lora_layers

    args = llama.ModelArgs(model_type="llama", hidden_size=48, num_hidden_layers=3, intermediate_size=96, num_attention_heads=4,
                           num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=97, tie_word_embeddings=False)
    mx.random.seed(3)
    model = llama.Model(args)
    model.freeze()
    linear_to_lora_layers(model, 2, {"rank": 4, "scale": 10.0, "dropout": 0.0})
    plan = fast.plan(model)
    assert plan.anatomy.head_weight is model.lm_head.weight and plan.fused_head.applies
    batch, lengths = next(iterate_batches(dataset(4), 2, 2048))
    (loss, _), grads = fast.FastLossFn(model, plan).value_and_grad(model, batch, lengths)
    (ref_loss, _), ref_grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    assert abs(loss.item() - ref_loss.item()) < 1e-5
    for (key, got), (_, want) in zip(tree_flatten(grads), tree_flatten(ref_grads)):
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-3, atol=1e-6 * float(mx.abs(want).max()) + 1e-9, err_msg=key)

    model.lm_head.unfreeze()
    trained = fast.plan(model).fused_head
    assert not trained.applies and "trained" in trained.reason


def test_host_step_needs_every_host_piece_and_lora_only_training() -> None:
    assert fast.plan(prepare(6, 2)).host_step.applies
    assert fast.plan(prepare(6, 2)).summary()["host_step"]["used"] is True
    assert fast.plan(prepare(6, 2), fast.FastOptions(host_step=False)).host_step.reason == "turned off"
    decision = fast.plan(prepare(6, 2), fast.FastOptions(fused_head=False)).host_step
    assert not decision.applies and "needs the fused head" in decision.reason
    decision = fast.plan(prepare(6, 2), fast.FastOptions(compile=True)).host_step
    assert not decision.applies and "needs native projections" in decision.reason
    decision = fast.plan(prepare(6, 2, dropout=0.1)).host_step
    assert not decision.applies and "dropout" in decision.reason


def test_host_step_off_when_more_than_adapters_train_and_training_stays_exact() -> None:
    def train_the_last_norm(model) -> None:
        model.model.layers[5].post_attention_layernorm.unfreeze()

    model = prepare(6, 2)
    train_the_last_norm(model)
    decision = fast.plan(model).host_step
    assert not decision.applies and "more than LoRA adapters" in decision.reason
    reference, candidate, plan, _ = run_pair(layers=2, batch_size=2, options=fast.FastOptions(), tweak=train_the_last_norm)
    assert not plan.host_step.applies and plan.native_linears.applies
    assert_same_training(reference, candidate)


def _rename_dropout_probability(model) -> int:
    """What a future MLX that renamed nn.Dropout's private `_p_1` would look like to the plan."""
    import mlx.nn as nn

    renamed = 0
    for _, module in model.named_modules():
        if isinstance(module, nn.Dropout) and hasattr(module, "_p_1"):
            module._keep_probability = module._p_1
            del module._p_1
            renamed += 1
    return renamed


def test_a_dropout_whose_probability_cannot_be_read_turns_the_host_step_off() -> None:
    # LoRA dropout 0: the host step (which has no dropout) would be exact, but only if the plan can
    # prove it. With the attribute it reads renamed, it cannot: everything that would ignore or
    # reshuffle random draws turns off, with the reason.
    model = prepare(6, 2, dropout=0.0)
    assert fast.plan(model).host_step.applies
    assert _rename_dropout_probability(model) > 0
    plan = fast.plan(model)
    for name in ("host_step", "trim_padding", "tail_queries", "compile"):
        decision = getattr(plan, name)
        assert not decision.applies and "whose probability tunelab cannot read" in decision.reason, (name, decision)


def test_a_module_not_known_to_be_deterministic_turns_the_host_step_off() -> None:
    import mlx.core as mx
    import mlx.nn as nn

    class Noisy(nn.Module):  # a stand-in for any layer whose forward might draw random numbers
        def __call__(self, x):
            return x + mx.random.normal(x.shape)

    model = prepare(6, 2)
    model.model.layers[5].noise = Noisy()
    decision = fast.plan(model).host_step
    assert not decision.applies and "Noisy" in decision.reason and "not known to be free of random draws" in decision.reason
