"""The fast path's loss and gradient, a drop-in for mlx-lm's `default_loss` under
`nn.value_and_grad(model, ...)`: same values, same gradient tree over the trainable parameters.

Built from an immutable plan: the host pieces it chose (plan.py), the block runner that carries
them (blocks.py), and the one strategy that computes the step (strategies.py).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .blocks import BlockRunner
from .bucketing import BUCKET, layout
from .frozen_linear import block_projections, frozen_linears
from .fused_head import FusedHead
from .host_attention import host_attentions
from .host_ops import swiglu as host_swiglu
from .host_step import HostStep
from .loss_head import device_masked_cross_entropy, fused_masked_cross_entropy, logits_at_positions, masked_cross_entropy, normed_rows_at_positions
from .plan import FastPlan
from .prefix_cache import PrefixCache, PrefixCacheStats, ProgressCallback
from .strategies import AutodiffStep, CompiledStep, HostStepPlan, MlxLmStep, ModelPart, StepArgs

Grads = dict


def _runner(plan: FastPlan) -> BlockRunner:
    """The blocks as the plan runs them. Host RoPE and attention in the adapted blocks only: the
    frozen blocks keep MLX's attention, because the prefix cache computes them over padded rows
    and the step without it over trimmed ones, and MLX gives both the same bits where BLAS-backed
    products do not (their kernels change with the matrix shape)."""
    anatomy, first = plan.anatomy, plan.first_adapted_block
    kwargs = {}
    if plan.host_activations.applies:
        kwargs["swiglu"] = host_swiglu
    if plan.host_attention.applies:
        kwargs["host_attention"] = host_attentions(anatomy.blocks[first:])
    if plan.native_linears.applies:
        # The adapted blocks' frozen projections as native products; W is packed here, once per run.
        kwargs["frozen_linears"] = frozen_linears(block_projections(anatomy.blocks[first:]))
    return BlockRunner(anatomy, **kwargs)


class FastLossFn:
    def __init__(self, model: nn.Module, fast_plan: FastPlan):
        self.model = model
        self.plan = fast_plan
        self.cache: Optional[PrefixCache] = None
        if fast_plan.anatomy is None:
            self.runner = None
            self.strategy = MlxLmStep(model)
            return
        self.runner = runner = _runner(fast_plan)
        first = fast_plan.first_adapted_block
        if fast_plan.prefix_cache.applies:
            self.cache = PrefixCache(runner, first, fast_plan.prefix_cache_bytes)
        cached = self.cache is not None
        # With the fused head, the model's part ends at the normed rows and the kernel does the
        # vocabulary projection together with the cross-entropy.
        fused = FusedHead(fast_plan.anatomy.head_weight) if fast_plan.fused_head.applies else None
        if fused is not None:
            head_input, head_loss, head_loss_only = normed_rows_at_positions, fused_masked_cross_entropy(fused), fused_masked_cross_entropy(fused, with_gradient=False)
        else:
            softmax = masked_cross_entropy if fast_plan.host_softmax else device_masked_cross_entropy
            head_input, head_loss, head_loss_only = logits_at_positions, softmax, softmax
        part = ModelPart(runner, first if cached else 0, cached, fast_plan.tail_queries.applies, head_input)
        if fast_plan.host_step.applies:
            host = HostStep(model, fast_plan.anatomy, first, fused, runner.frozen_linears, runner.host_attention)
            self.strategy = HostStepPlan(host, runner, first, cached)
        elif fast_plan.compile.applies:
            self.strategy = CompiledStep(model, part, head_loss, head_loss_only)
        else:
            self.strategy = AutodiffStep(model, part, head_loss, head_loss_only)

    def precompute(self, sequences: Iterable[Sequence[int]], progress: Optional[ProgressCallback] = None) -> Optional[PrefixCacheStats]:
        """Fill the prefix cache up front (token sequences as iterate_batches will see them, i.e.
        already cut to max_seq_length). Without a cache this does nothing and returns None."""
        if self.cache is None:
            return None
        return self.cache.precompute(sequences, progress)

    def _arguments(self, batch: mx.array, lengths: mx.array) -> StepArgs:
        if self.plan.anatomy is None:
            return StepArgs(batch, lengths)
        lay = layout(
            np.array(batch),
            np.array(lengths),
            trim=self.plan.trim_padding.applies,
            loss_positions_only=self.plan.loss_head.applies,
            tail_queries=self.plan.tail_queries.applies,
            bucket=BUCKET if self.plan.compile.applies else 1,
        )
        inputs = self.cache.hidden(lay.source, lay.lengths, lay.width) if self.cache is not None else mx.array(lay.tokens)
        return StepArgs(
            batch, lengths, inputs, mx.array(lay.positions), mx.array(lay.targets), mx.array(lay.weights), mx.array(lay.ntoks, dtype=mx.int32), lay.tail_start
        )

    def loss_and_grad(self, batch: mx.array, lengths: mx.array) -> Tuple[mx.array, mx.array, Grads]:
        """(loss, ntoks, grads) for one `iterate_batches` batch, like
        `nn.value_and_grad(model, default_loss)(model, batch, lengths)`."""
        (loss, ntoks), grads = self.strategy.value_and_grad(self._arguments(batch, lengths))
        return loss, ntoks, grads

    def value_and_grad(self, model: nn.Module, batch: mx.array, lengths: mx.array) -> Tuple[Tuple[mx.array, mx.array], Grads]:
        """The signature of `nn.value_and_grad(model, default_loss)`: ((loss, ntoks), grads)."""
        loss, ntoks, grads = self.loss_and_grad(batch, lengths)
        return (loss, ntoks), grads

    def loss(self, batch: mx.array, lengths: mx.array) -> Tuple[mx.array, mx.array]:
        """(loss, ntoks) without gradients, e.g. for validation batches."""
        return self.strategy.loss(self._arguments(batch, lengths))

    def loss_fn(self, model: nn.Module, batch: mx.array, lengths: mx.array) -> Tuple[mx.array, mx.array]:
        """The signature of mlx-lm's `default_loss(model, batch, lengths)`, for validation."""
        return self.loss(batch, lengths)

    def summary(self) -> dict:
        """TuneResult.optimisations: each knob (FastOptions' names) used or why not, the prefix
        cache with its counters."""
        out = self.plan.summary()
        stats = self.cache.stats if self.cache is not None else PrefixCacheStats()
        out["prefix_cache"].update(
            cached_rows=stats.cached, rows=stats.examples, skipped_over_budget=stats.skipped_over_budget, bytes=stats.bytes, seconds=round(stats.seconds, 3)
        )
        return out
