"""Which fast-path optimisations are exact for a given model and LoRA set-up, and why not.

Every optimisation here must give the same losses and adapter weights as mlx-lm's own step
(`default_loss` under `nn.value_and_grad`). Where that cannot be guaranteed, it is switched
off and the plan carries one sentence saying why, for the run's summary table. The plan is
immutable: what runs is built from it (loss.py), never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Dict, Optional

import mlx.core as mx
import mlx.nn as nn

from . import decisions as decide
from .anatomy import Anatomy, recognise
from .decisions import Decision

DEFAULT_PREFIX_CACHE_MB = 1024


@dataclass(frozen=True)
class FastOptions:
    """What the caller allows; `plan` decides what actually applies. Each field's name is the
    optimisation's one name everywhere: the plan, the wire's `optimisations`, the summary table."""

    prefix_cache: bool = field(default=True, metadata={"help": "Reuse the frozen blocks' output per example (--no-prefix-cache turns it off)."})
    prefix_cache_mb: float = field(default=DEFAULT_PREFIX_CACHE_MB, metadata={"help": "Memory budget for cached activations; examples beyond it run the full forward."})
    loss_head: bool = field(default=True, metadata={"help": "Final norm and vocabulary logits only at positions the loss counts."})
    tail_queries: bool = field(default=True, metadata={"help": "Run the last block only from the first loss position on (keys and values still from every position)."})
    trim_padding: bool = field(default=True, metadata={"help": "Cut each batch to its longest example instead of mlx-lm's 32-token padding."})
    host_activations: bool = field(default=True, metadata={"help": "On the CPU, compute the blocks' SwiGLU with NumPy (MLX's x86 CPU exp is scalar; same values)."})
    fused_head: bool = field(default=True, metadata={"help": "On the CPU, compute the vocabulary logits, softmax and their gradient in one native pass over the frozen head weight (host_kernels.cpp) instead of two BLAS products."})
    native_linears: bool = field(default=True, metadata={"help": "On the CPU, compute the adapted blocks' frozen projections (x @ W^T and its input gradient) with native kernels over a copy of W packed once per run (host_kernels.cpp) instead of BLAS, which re-packs W at every call."})
    host_attention: bool = field(default=True, metadata={"help": "On the CPU, compute the blocks' RoPE and attention with NumPy, from the projections to the output projection's input (MLX's x86 CPU sin/cos and softmax exp are scalar; same values)."})
    host_step: bool = field(default=True, metadata={"help": "On the CPU, where the adapted blocks, their projections and the head all run on the host, compute the step's forward and backward there as one written-out sequence (fast/host_step.py) instead of through MLX's autodiff."})
    compile: bool = field(default=False, metadata={"help": "mx.compile the model's part of the step (one trace per bucketed shape). Off by default: a trace cannot hold the host kernels (SwiGLU, attention, projections, the fused head), so compiling turns them off, and the uncompiled step with them is faster on CPU."})


# The optimisations a plan decides, in the order the summary lists them (FastOptions' names).
KNOBS = tuple(f.name for f in fields(FastOptions) if f.name != "prefix_cache_mb")


@dataclass(frozen=True, eq=False)
class FastPlan:
    anatomy: Optional[Anatomy]
    first_adapted_block: int
    prefix_cache_bytes: int
    decided: Dict[str, Decision]
    # Where the vocabulary head's softmax runs when the fused kernel does not: NumPy on the CPU
    # (MLX's CPU exp is scalar), MLX's own on a GPU (a host softmax would copy the logits back).
    host_softmax: bool = True

    def __getattr__(self, name: str) -> Decision:
        # plan.prefix_cache, plan.host_step, ...: one Decision per knob.
        decided = self.__dict__.get("decided", {})
        if name in decided:
            return decided[name]
        raise AttributeError(name)

    @property
    def any(self) -> bool:
        return any(d.applies for d in self.decided.values())

    def summary(self) -> Dict[str, Dict[str, object]]:
        """For the run's summary table and `TuneResult.optimisations` (the loss adds the prefix
        cache's counters)."""
        out = {name: self.decided[name].as_dict() for name in KNOBS}
        out["prefix_cache"]["frozen_blocks"] = self.first_adapted_block if self.prefix_cache.applies else 0
        return out


def _off(reason: str) -> Dict[str, Decision]:
    return {name: Decision(False, reason) for name in KNOBS}


def plan(model: nn.Module, options: Optional[FastOptions] = None) -> FastPlan:
    """Decide, from the model as it will be trained (LoRA already applied, base frozen)."""
    options = options or FastOptions()
    anatomy, why_not = recognise(model)
    if anatomy is None:
        return FastPlan(None, 0, 0, _off(why_not))
    blocks = anatomy.blocks
    adapted = [i for i, b in enumerate(blocks) if decide.has_trainable(b)]
    first = adapted[0] if adapted else len(blocks)
    randomness = decide.random_draws(model)
    on_cpu = mx.default_device() == mx.cpu

    d: Dict[str, Decision] = {}
    d["prefix_cache"] = decide.prefix_cache(options, anatomy, adapted, first)
    d["loss_head"] = Decision(True, "norm and logits only at answer/loss positions" + ("" if on_cpu else " (MLX's softmax on the GPU)")) if options.loss_head else Decision(False, "turned off")
    d["tail_queries"] = decide.tail_queries(options, anatomy, d["loss_head"], randomness, first)
    d["trim_padding"] = decide.trim_padding(options, randomness)
    d["host_activations"] = decide.host_computation_blocked(options.host_activations, options, randomness, anatomy, first, "the model runs on the GPU, where MLX's own kernels are fast") or Decision(
        True, "SwiGLU computed with NumPy (vectorised exp; MLX's CPU exp is scalar)"
    )
    d["compile"] = decide.compiled(options, randomness)
    d["fused_head"] = decide.fused_head(model, anatomy, d["loss_head"], options)
    d["native_linears"] = decide.native_linears(model, anatomy, first, options, randomness)
    d["host_attention"] = decide.host_attention(anatomy, first, options, randomness)
    needs = {name: d[key] for name, key in (("the fused head", "fused_head"), ("native projections", "native_linears"), ("host attention", "host_attention"), ("host SwiGLU", "host_activations"))}
    d["host_step"] = decide.host_step(model, anatomy, first, options, randomness, needs)
    return FastPlan(
        anatomy=anatomy,
        first_adapted_block=first,
        prefix_cache_bytes=int(max(0.0, options.prefix_cache_mb) * 2**20),
        decided={name: d[name] for name in KNOBS},
        host_softmax=on_cpu,
    )
