"""The fast %tune path: the same losses and adapter weights as mlx-lm's step, with less work.

The front door: `plan(model, FastOptions(...))` decides, from the model as it will be trained,
which optimisations are exact (an immutable FastPlan, each knob a Decision with its reason);
`FastLossFn(model, plan)` is the drop-in for `nn.value_and_grad(model, default_loss)` built from
it; `report()` says what the host kernels are on this machine (for doctor); `build()` builds and
checks them (for set-up). Inside:

- plan.py, decisions.py  which optimisations apply and why not (dropout fails closed)
- loss.py                FastLossFn: the batch layout, the block runner, the chosen strategy
- strategies.py          one class per way of computing a step: mlx-lm's, autodiff over the
                         mirrored blocks, compiled, the written-out host step
- anatomy.py, blocks.py  where a model splits; its llama/qwen2 blocks run through a copy of their
                         code with the host replacements the plan chose (and tail queries)
- host_math.py           the host's NumPy forward/backward pairs (norms, SwiGLU, softmax), used by
                         the custom functions (host_ops.py, loss_head.py) and the host step
- host_attention.py      RoPE + grouped-query attention on the host, forward and backward
- frozen_linear.py, fused_head.py  native products over weights packed once (csrc/host_kernels.cpp,
                         built by host_kernels.py, each SIMD path checked per CPU by kernels_check.py)
- host_step.py           the adapted blocks' forward and backward written out on the host
- prefix_cache.py        the frozen blocks' output computed once per example (exact: keyed by tokens)
- loss_head.py           norm and vocabulary logits only where the loss counts
- bucketing.py, compiled_step.py  batch layout; mx.compile of the model's part (opt-in)

A training loop adopts it after LoRA is applied and the base frozen (the plan reads which blocks
are trainable):

    fast_loss = fast.FastLossFn(model, fast.plan(model, fast.FastOptions(prefix_cache=...)))
    fast_loss.precompute([tokens[:max_seq_length] for tokens, _ in examples])
    loss_and_grad = fast_loss.value_and_grad   # was nn.value_and_grad(model, default_loss)
    loss_fn = fast_loss.loss_fn                # was default_loss (validation)
    result["optimisations"] = fast_loss.summary()  # {knob: {used, reason, detail}}, FastOptions' names
"""

from __future__ import annotations

from typing import Any, Dict

from .decisions import Decision
from .loss import FastLossFn
from .plan import DEFAULT_PREFIX_CACHE_MB, KNOBS, FastOptions, FastPlan, plan
from .prefix_cache import PrefixCacheStats

__all__ = ["DEFAULT_PREFIX_CACHE_MB", "KNOBS", "Decision", "FastOptions", "FastPlan", "FastLossFn", "PrefixCacheStats", "build", "plan", "report"]


def report() -> Dict[str, Any]:
    """The host kernels on this machine, for `tunelab doctor`: the library, the SIMD path its
    products take here ("avx512", "avx2", "portable"; None when unavailable), why not, and this
    CPU's check of each path (None: passed)."""
    from . import host_kernels

    lib, why = host_kernels.load()
    simd = None
    if lib is not None:
        try:
            simd = lib.tunelab_linear_path(16, host_kernels.path_cap()).decode()
        except ValueError as error:
            why = str(error)
    return {"path": getattr(lib, "_name", None), "simd": simd, "why": why or None, "checks": host_kernels.checks()}


def build() -> Dict[str, Any]:
    """Builds the host kernels for this source and checks each SIMD path on this CPU (set-up);
    raises host_kernels.BuildError (one sentence) when they cannot be built."""
    from . import host_kernels
    from .kernels_check import checked_paths

    path = host_kernels.build()
    return {"path": str(path), "checks": checked_paths(path)}
