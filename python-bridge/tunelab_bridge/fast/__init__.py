"""The fast %tune path: the same losses and adapter weights as mlx-lm's step, with less work.

- prefix_cache.py   the frozen blocks' output, computed once per example (exact: keyed by tokens)
- loss_head.py      final norm + vocabulary logits only where the loss counts (one softmax pass,
                    in NumPy: MLX's CPU exp is scalar)
- fused_head.py     on CPUs with AVX-512 or AVX2, the head's logits, softmax and gradient in one native
                    pass over the frozen head weight (host_kernels.py builds csrc/ with g++)
- frozen_linear.py  on CPUs with AVX-512 or AVX2, the adapted blocks' frozen projections as native
                    products over weights packed once per run (the LoRA term stays in MLX,
                    except in the host step)
- anatomy.py        where a model's forward splits (embedding, blocks, norm, head); the adapted
                    llama/qwen2 blocks run through a copy of their code, the last one from the first
                    loss position on (tail queries)
- host_ops.py       SwiGLU computed with NumPy on the CPU (same values; MLX's x86 exp is scalar)
- host_attention.py RoPE and grouped-query attention of the mirrored blocks computed with NumPy
                    on the CPU, forward and backward (same values; MLX's x86 sin/cos/exp are scalar)
- host_step.py      where all of the above run on the host: the adapted blocks' forward and
                    backward and the head written out as one sequence of NumPy and native calls,
                    instead of MLX's autodiff stitching them together (~60 hand-offs per step)
- bucketing.py      batches cut to their longest row (shapes bucketed only for compiled traces)
- compiled_step.py  mx.compile of the model's part of the step (opt-in: FastOptions.compile;
                    the uncompiled step with the host-side softmax measured faster on CPU)
- applicability.py  which of these are exact for this model and LoRA set-up (and why not)
- loss.py           FastLossFn: the drop-in for `nn.value_and_grad(model, default_loss)`

A training loop adopts it after LoRA is applied and the base frozen (order matters: the plan
reads which blocks are trainable):

    from tunelab_bridge import fast

    model.freeze()
    linear_to_lora_layers(model, layers, lora_parameters)
    model.train()
    fast_loss = fast.FastLossFn(model, fast.plan(model, fast.FastOptions(
        prefix_cache=config.prefix_cache,
        prefix_cache_mb=fast.DEFAULT_PREFIX_CACHE_MB if config.prefix_cache_mb is None else config.prefix_cache_mb)))
    fast_loss.precompute(
        [tokens[: config.max_seq_length] for tokens, _ in train_examples + valid_examples],
        progress=lambda done, total: emit("phase", {"name": "preparing", "detail": f"frozen blocks {done}/{total} examples"}))
    loss_and_grad = fast_loss.value_and_grad   # was nn.value_and_grad(model, default_loss)
    loss_fn = fast_loss.loss_fn                # was default_loss (validation)
    ...
    result["optimisations"] = fast_loss.summary()
    # {"prefix_cache": {"used", "reason", "frozen_blocks", "stats"}, "loss_head": {"used", "reason"},
    #  "tail_queries": {...}, "trim_padding": {...}, "compile": {...}}: the summary table's
    #  "prefix cache" line is optimisations.prefix_cache.used (+ reason when not used).

`value_and_grad(model, batch, lengths)` returns ((loss, ntoks), grads) like mlx-lm's pair, for
batches laid out as `iterate_batches` makes them ((B, W) tokens, (B, 2) [offset, length]).
Where an optimisation is not exact (dropout below the first adapted block, adapters in every
block, a trained embedding, a model whose forward is not a plain chain), it is off and
`summary()` says why; with everything off the step is mlx-lm's own.
"""

from .applicability import DEFAULT_PREFIX_CACHE_MB, Decision, FastOptions, FastPlan, plan
from .loss import FastLossFn
from .prefix_cache import PrefixCacheStats

__all__ = ["DEFAULT_PREFIX_CACHE_MB", "Decision", "FastOptions", "FastPlan", "FastLossFn", "PrefixCacheStats", "plan"]
