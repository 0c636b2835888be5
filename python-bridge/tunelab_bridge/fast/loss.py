"""The fast path's loss and gradient, a drop-in for mlx-lm's `default_loss` under
`nn.value_and_grad(model, ...)`: same values, same gradient tree over the trainable parameters.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.tuner.trainer import default_loss

from .applicability import FastPlan
from .bucketing import BUCKET, layout
from .host_attention import host_attentions
from .host_ops import swiglu as host_swiglu
from .compiled_step import compiled_loss, compiled_value_and_grad
from .frozen_linear import block_projections, frozen_linears
from .fused_head import FusedHead
from .host_step import HostStep
from .loss_head import fused_masked_cross_entropy, logits_at_positions, masked_cross_entropy, normed_rows_at_positions
from .prefix_cache import PrefixCache, PrefixCacheStats, ProgressCallback

Grads = dict


class FastLossFn:
    def __init__(self, model: nn.Module, fast_plan: FastPlan):
        self.model = model
        self.plan = fast_plan
        anatomy = fast_plan.anatomy
        self.cache: Optional[PrefixCache] = None
        if anatomy is None:
            self._value_and_grad = nn.value_and_grad(model, default_loss)
            return
        if fast_plan.host_activations.applies:
            anatomy.swiglu = host_swiglu
        # RoPE and attention on the host for the adapted blocks only. The frozen blocks keep MLX's
        # attention: the prefix cache computes them over padded rows, the step without it over
        # trimmed ones, and MLX gives both the same bits where BLAS-backed products do not (their
        # kernels change with the matrix shape), which would make a run depend on the cache.
        first = fast_plan.first_adapted_block
        anatomy.host_attention = host_attentions(anatomy.blocks[first:]) if fast_plan.host_attention.applies else {}
        if fast_plan.prefix_cache.applies:
            self.cache = PrefixCache(anatomy, fast_plan.first_adapted_block, fast_plan.prefix_cache_bytes)
        start = fast_plan.first_adapted_block if self.cache is not None else 0
        cached = self.cache is not None
        tail = fast_plan.tail_queries.applies
        last = fast_plan.num_blocks - 1
        # With the fused head, the model's part ends at the normed rows and the kernel does the
        # vocabulary projection together with the cross-entropy.
        fused = FusedHead(anatomy.head_weight) if fast_plan.fused_head.applies else None
        # The adapted blocks' frozen projections as native products; W is packed here, once per run.
        if fast_plan.native_linears.applies:
            anatomy.frozen_linears = frozen_linears(block_projections(anatomy.blocks[fast_plan.first_adapted_block :]))
        else:
            anatomy.frozen_linears = {}
        head_input = normed_rows_at_positions if fused is not None else logits_at_positions
        head_loss = fused_masked_cross_entropy(fused) if fused is not None else masked_cross_entropy
        head_loss_only = fused_masked_cross_entropy(fused, with_gradient=False) if fused is not None else masked_cross_entropy

        def model_part(inputs: mx.array, positions: mx.array, tail_start: int = 0) -> mx.array:
            h = inputs if cached else anatomy.embed_tokens(inputs)
            if tail:
                h = anatomy.run_last_block_from(anatomy.run_blocks(h, start, last), tail_start)
            else:
                h = anatomy.run_blocks(h, start)
            return head_input(anatomy, h, positions)

        def loss(inputs: mx.array, positions: mx.array, targets: mx.array, weights: mx.array, ntoks: mx.array, tail_start: int = 0) -> mx.array:
            return head_loss(model_part(inputs, positions, tail_start), targets, weights, ntoks)

        def loss_only(inputs: mx.array, positions: mx.array, targets: mx.array, weights: mx.array, ntoks: mx.array, tail_start: int = 0) -> mx.array:
            return head_loss_only(model_part(inputs, positions, tail_start), targets, weights, ntoks)

        self._loss = loss
        if fast_plan.host_step.applies:
            host = HostStep(model, anatomy, first, fused, anatomy.frozen_linears, anatomy.host_attention)

            def block_input(inputs: mx.array) -> mx.array:
                # The frozen blocks get no gradient: their output is an input to the host step.
                return inputs if cached else anatomy.run_blocks(anatomy.embed_tokens(inputs), 0, first)

            self._value_and_grad = lambda inputs, positions, targets, weights, ntoks, tail_start=0: host.loss_and_grad(block_input(inputs), positions, targets, weights, ntoks, tail_start)
            self._loss_only = lambda inputs, positions, targets, weights, ntoks, tail_start=0: host.loss_and_grad(block_input(inputs), positions, targets, weights, ntoks, tail_start, with_gradient=False)[0]
        elif fast_plan.compile.applies:
            # Arguments are reordered so the model's part (compiled) takes the first three.
            vg = compiled_value_and_grad(model, model_part, head_loss, 3)
            only = compiled_loss(model, model_part, head_loss_only, 3)
            self._value_and_grad = lambda inputs, positions, targets, weights, ntoks, tail_start=0: vg(inputs, positions, tail_start, targets, weights, ntoks)
            self._loss_only = lambda inputs, positions, targets, weights, ntoks, tail_start=0: only(inputs, positions, tail_start, targets, weights, ntoks)
        else:
            self._value_and_grad = nn.value_and_grad(model, loss)
            self._loss_only = loss_only

    def precompute(self, sequences: Iterable[Sequence[int]], progress: Optional[ProgressCallback] = None) -> Optional[PrefixCacheStats]:
        """Fill the prefix cache up front (token sequences as iterate_batches will see them, i.e.
        already cut to max_seq_length). Without a cache this does nothing and returns None."""
        if self.cache is None:
            return None
        return self.cache.precompute(sequences, progress)

    def _arguments(self, batch: mx.array, lengths: mx.array) -> Tuple[mx.array, ...]:
        lay = layout(
            np.array(batch),
            np.array(lengths),
            trim=self.plan.trim_padding.applies,
            loss_positions_only=self.plan.loss_head.applies,
            tail_queries=self.plan.tail_queries.applies,
            bucket=BUCKET if self.plan.compile.applies else 1,
        )
        if self.cache is not None:
            inputs = self.cache.hidden(lay.source, lay.lengths, lay.width)
        else:
            inputs = mx.array(lay.tokens)
        return (
            inputs,
            mx.array(lay.positions),
            mx.array(lay.targets),
            mx.array(lay.weights),
            mx.array(lay.ntoks, dtype=mx.int32),
            lay.tail_start,
        )

    def loss_and_grad(self, batch: mx.array, lengths: mx.array) -> Tuple[mx.array, mx.array, Grads]:
        """(loss, ntoks, grads) for one `iterate_batches` batch, like
        `nn.value_and_grad(model, default_loss)(model, batch, lengths)`."""
        if self.plan.anatomy is None:
            (loss, ntoks), grads = self._value_and_grad(self.model, batch, lengths)
            return loss, ntoks, grads
        args = self._arguments(batch, lengths)
        loss, grads = self._value_and_grad(*args)
        return loss, args[4], grads

    def value_and_grad(self, model: nn.Module, batch: mx.array, lengths: mx.array) -> Tuple[Tuple[mx.array, mx.array], Grads]:
        """The signature of `nn.value_and_grad(model, default_loss)`: ((loss, ntoks), grads)."""
        loss, ntoks, grads = self.loss_and_grad(batch, lengths)
        return (loss, ntoks), grads

    def loss_fn(self, model: nn.Module, batch: mx.array, lengths: mx.array) -> Tuple[mx.array, mx.array]:
        """The signature of mlx-lm's `default_loss(model, batch, lengths)`, for validation."""
        return self.loss(batch, lengths)

    def summary(self) -> dict:
        """What was used and why not, with the prefix cache's counters (for the summary table)."""
        out = self.plan.summary()
        if self.cache is not None:
            out["prefix_cache"]["stats"] = self.cache.stats.as_dict()
        return out

    def loss(self, batch: mx.array, lengths: mx.array) -> Tuple[mx.array, mx.array]:
        """(loss, ntoks) without gradients, e.g. for validation batches."""
        if self.plan.anatomy is None:
            return default_loss(self.model, batch, lengths)
        args = self._arguments(batch, lengths)
        return self._loss_only(*args), args[4]
