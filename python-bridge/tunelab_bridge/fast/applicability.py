"""Which fast-path optimisations are exact for a given model and LoRA set-up, and why not.

Every optimisation here must give the same losses and adapter weights as mlx-lm's own step
(`default_loss` under `nn.value_and_grad`). Where that cannot be guaranteed, it is switched
off and the plan carries one sentence saying why, for the run's summary table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .anatomy import Anatomy, recognise

DEFAULT_PREFIX_CACHE_MB = 1024


@dataclass
class FastOptions:
    """What the caller allows; `plan` decides what actually applies."""

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


@dataclass
class Decision:
    applies: bool
    reason: str = ""

    def as_dict(self) -> Dict[str, object]:
        return {"used": self.applies, "reason": self.reason}


@dataclass
class FastPlan:
    anatomy: Optional[Anatomy]
    first_adapted_block: int
    num_blocks: int
    prefix_cache: Decision
    loss_head: Decision
    tail_queries: Decision
    trim_padding: Decision
    host_activations: Decision
    compile: Decision
    prefix_cache_bytes: int
    fused_head: Decision = field(default_factory=lambda: Decision(False, "not planned"))
    native_linears: Decision = field(default_factory=lambda: Decision(False, "not planned"))
    host_attention: Decision = field(default_factory=lambda: Decision(False, "not planned"))
    host_step: Decision = field(default_factory=lambda: Decision(False, "not planned"))

    @property
    def any(self) -> bool:
        return any(d.applies for d in (self.prefix_cache, self.loss_head, self.tail_queries, self.trim_padding, self.host_activations, self.compile, self.fused_head, self.native_linears, self.host_attention, self.host_step))

    def summary(self) -> Dict[str, Dict[str, object]]:
        """For the run's summary table and `TuneResult.optimisations`."""
        return {
            "prefix_cache": {**self.prefix_cache.as_dict(), "frozen_blocks": self.first_adapted_block if self.prefix_cache.applies else 0},
            "loss_head": self.loss_head.as_dict(),
            "tail_queries": self.tail_queries.as_dict(),
            "trim_padding": self.trim_padding.as_dict(),
            "host_activations": self.host_activations.as_dict(),
            "compile": self.compile.as_dict(),
            "fused_head": self.fused_head.as_dict(),
            "native_linears": self.native_linears.as_dict(),
            "host_attention": self.host_attention.as_dict(),
            "host_step": self.host_step.as_dict(),
        }


def _draws_random(module: nn.Module) -> bool:
    """True when a module would draw random numbers in training mode (dropout with p > 0)."""
    return any(getattr(m, "_p_1", 1.0) < 1.0 for _, m in module.named_modules())


def _has_trainable(module: nn.Module) -> bool:
    return len(tree_flatten(module.trainable_parameters())) > 0


def plan(model: nn.Module, options: Optional[FastOptions] = None) -> FastPlan:
    """Decide, from the model as it will be trained (LoRA already applied, base frozen)."""
    options = options or FastOptions()
    anatomy, why_not = recognise(model)
    if anatomy is None:
        off = Decision(False, why_not)
        return FastPlan(None, 0, 0, off, off, off, off, off, off, 0, fused_head=off, native_linears=off, host_attention=off, host_step=off)

    blocks = anatomy.blocks
    adapted = [i for i, b in enumerate(blocks) if _has_trainable(b)]
    first = adapted[0] if adapted else len(blocks)
    random_anywhere = _draws_random(model)

    if not options.prefix_cache:
        prefix = Decision(False, "turned off (--no-prefix-cache)")
    elif options.prefix_cache_mb <= 0:
        prefix = Decision(False, "the activation budget is 0 MB")
    elif _has_trainable(anatomy.embed):
        prefix = Decision(False, "the embedding is trained, so the blocks' inputs change every step")
    elif not adapted:
        prefix = Decision(False, "no block has trainable weights")
    elif first == 0:
        prefix = Decision(False, "adapters start at the first block, so there is no frozen prefix to reuse")
    elif _draws_random(anatomy.embed) or any(_draws_random(b) for b in blocks[:first]):
        prefix = Decision(False, f"dropout in the blocks below block {first} makes their output differ every step")
    else:
        prefix = Decision(True, f"blocks 0-{first - 1} computed once per example")

    head = Decision(True, "norm and logits only at answer/loss positions") if options.loss_head else Decision(False, "turned off")

    # Dropout draws one random mask per element of the padded batch; changing the batch width
    # or tracing the step would change which numbers are drawn, so both stay off with dropout.
    if not options.trim_padding:
        trim = Decision(False, "turned off")
    elif random_anywhere:
        trim = Decision(False, "dropout draws depend on the padded batch shape")
    else:
        trim = Decision(True, "batches cut to their longest example; widths in multiples of 8 only when compiled")

    if not options.tail_queries:
        tail = Decision(False, "turned off")
    elif not head.applies:
        tail = Decision(False, "needs the loss-position head")
    elif random_anywhere:
        tail = Decision(False, "dropout draws depend on the padded batch shape")
    elif not anatomy.tail_queries_supported():
        tail = Decision(False, "the last block is not a llama or qwen2 block whose code the fast path mirrors")
    elif len(blocks) - first < 1:
        tail = Decision(False, "the last block has no adapter")
    else:
        tail = Decision(True, "last block computed from the first loss position on")

    if random_anywhere:
        compiled = Decision(False, "dropout draws random numbers inside the step")
    elif not options.compile:
        compiled = Decision(False, "not by default: the uncompiled step with its host kernels measured faster on CPU")
    else:
        compiled = Decision(True, "mx.compile of the blocks and logits (the softmax runs outside the trace)")

    host = _host_computation_blocked(options.host_activations, compiled, anatomy, first, "the model runs on the GPU, where MLX's own kernels are fast") or Decision(
        True, "SwiGLU computed with NumPy (vectorised exp; MLX's CPU exp is scalar)"
    )

    fused = _fused_head(model, anatomy, head, options)
    linears = _native_linears(model, anatomy, first, compiled, options)
    attention = _host_attention(anatomy, first, compiled, options)
    return FastPlan(
        anatomy=anatomy,
        first_adapted_block=first,
        num_blocks=len(blocks),
        prefix_cache=prefix,
        loss_head=head,
        tail_queries=tail,
        trim_padding=trim,
        host_activations=host,
        compile=compiled,
        prefix_cache_bytes=int(max(0.0, options.prefix_cache_mb) * 2**20),
        fused_head=fused,
        native_linears=linears,
        host_attention=attention,
        host_step=_host_step(model, anatomy, first, options, random_anywhere, {"the fused head": fused, "native projections": linears, "host attention": attention, "host SwiGLU": host}),
    )


def _host_computation_blocked(enabled: bool, compiled: Decision, anatomy: Anatomy, first: int, on_gpu: str) -> Optional[Decision]:
    """Why a computation moved to the host cannot run in the adapted blocks (None: it can)."""
    if not enabled:
        return Decision(False, "turned off")
    if compiled.applies:
        return Decision(False, "the compiled step traces the blocks, and a host computation cannot be traced")
    if mx.default_device() != mx.cpu:
        return Decision(False, on_gpu)
    blocks = anatomy.blocks[first:]
    if not blocks or not all(anatomy.mirrors(b) for b in blocks):
        return Decision(False, "the adapted blocks are not llama or qwen2 blocks whose code the fast path mirrors")
    return None


def _host_attention(anatomy: Anatomy, first: int, compiled: Decision, options: FastOptions) -> Decision:
    from .host_attention import supports

    blocked = _host_computation_blocked(options.host_attention, compiled, anatomy, first, "the model runs on the GPU, where MLX's own attention kernels are fast")
    if blocked:
        return blocked
    blocks = anatomy.blocks[first:]
    if not all(supports(b.self_attn) for b in blocks):
        return Decision(False, "the adapted blocks' rotary embedding is not plain non-traditional RoPE over the whole head (scaled, traditional or partial rotations keep MLX's attention)")
    dtypes = {_projection_dtype(b.self_attn.q_proj) for b in blocks}
    if dtypes != {mx.float32}:
        # The host computes in float32; MLX's attention in a half type would round differently.
        named = ", ".join(sorted(str(t).rsplit(".", 1)[-1] for t in dtypes))
        return Decision(False, f"the adapted blocks compute in {named}, and the host attention is float32 (exact only for float32 activations)")
    return Decision(True, f"RoPE and attention of blocks {first}-{len(anatomy.blocks) - 1} computed with NumPy (cos/sin tabled once per length, vectorised exp; MLX's CPU sin, cos and exp are scalar)")


def _fused_head(model: nn.Module, anatomy: Anatomy, head: Decision, options: FastOptions) -> Decision:
    weight = anatomy.head_weight
    if not options.fused_head:
        return Decision(False, "turned off")
    if not head.applies:
        return Decision(False, "needs the loss-position head")
    if mx.default_device() != mx.cpu:
        return Decision(False, "the model runs on the GPU, where MLX's own products are fast")
    if weight is None:
        return Decision(False, "the vocabulary head is quantized or has a bias, and the kernel takes a plain float32 matrix")
    if weight.dtype != mx.float32:
        return Decision(False, f"the vocabulary head is {str(weight.dtype).rsplit('.', 1)[-1]}, and the kernel takes float32")
    if any(p is weight for _, p in tree_flatten(model.trainable_parameters())):
        return Decision(False, "the vocabulary head is trained, and the kernel keeps a copy of it for the whole run")
    found = _kernel_library()
    if isinstance(found, Decision):
        return found
    lib, cap, capped = found
    path = lib.tunelab_fused_cross_entropy_path(weight.shape[1], cap).decode()
    if path == "portable" and capped != "portable":
        # Measured on a Zen 4: the portable loops (SSE2 there) take ~200 ms for 32 rows of
        # SmolLM2's head, MLX's two OpenBLAS products ~35 ms.
        return Decision(False, "the kernel's fast paths need AVX-512 or AVX2 (and a hidden size that is a multiple of 16); its portable loops are slower than MLX's BLAS products")
    return Decision(True, f"logits, softmax and gradient in one native pass over the head weight ({_kernel_path(path, capped)})")


def _projection_dtype(module: nn.Module):
    """The dtype a (LoRA-wrapped, possibly quantized) projection's output has: its weight's, or
    for quantized layers its scales'."""
    base = getattr(module, "linear", module)
    return base["scales"].dtype if "scales" in base else base.weight.dtype


def _native_linears(model: nn.Module, anatomy: Anatomy, first: int, compiled: Decision, options: FastOptions) -> Decision:
    from .frozen_linear import base_linear, block_projections

    blocked = _host_computation_blocked(options.native_linears, compiled, anatomy, first, "the model runs on the GPU, where MLX's own products are fast")
    if blocked:
        return blocked
    blocks = anatomy.blocks[first:]
    trainable = {id(p) for _, p in tree_flatten(model.trainable_parameters())}
    for module in block_projections(blocks):
        base = base_linear(module)
        if base is None:
            return Decision(False, "a projection in the adapted blocks is quantized or is not a plain or LoRA linear layer")
        parameters = [base.weight] + ([base.bias] if "bias" in base else [])
        if any(p.dtype != mx.float32 for p in parameters):
            return Decision(False, f"the adapted blocks' weights are {str(base.weight.dtype).rsplit('.', 1)[-1]}, and the kernels take float32")
        if any(id(p) in trainable for p in parameters):
            return Decision(False, "a base weight or bias in the adapted blocks is trained, and the kernels keep a copy for the whole run")
    found = _kernel_library()
    if isinstance(found, Decision):
        return found
    lib, cap, capped = found
    widths = {base_linear(m).weight.shape[1] for m in block_projections(blocks)}
    paths = {lib.tunelab_linear_path(k, cap).decode() for k in widths}
    if "portable" in paths and capped != "portable":
        # The portable loops are a correctness fallback; BLAS is several times faster than them.
        return Decision(False, "the kernels' fast paths need AVX-512 or AVX2 (and layer widths that are multiples of 16); their portable loops are slower than MLX's BLAS products")
    from .host_kernels import PATHS

    path = min(paths, key=PATHS.index)  # widths that are all multiples of 16 share one path
    return Decision(True, f"frozen projections of blocks {first}-{len(anatomy.blocks) - 1} as native products over weights packed once ({_kernel_path(path, capped)})")


def _kernel_library() -> Union[Decision, Tuple[Any, int, Optional[str]]]:
    """(library, the `cap` its calls take, the path the environment caps it to or None), or the
    Decision saying why the kernels are off (no library, or a bad TUNELAB_HOST_KERNELS_PATH)."""
    from . import host_kernels  # not at import time: `python -m ...host_kernels` imports this package

    lib, why = host_kernels.load()
    if lib is None:
        return Decision(False, why)
    try:
        cap = host_kernels.path_cap()
    except ValueError as error:
        return Decision(False, str(error))
    return lib, cap, host_kernels.capped_by_environment()


def _kernel_path(path: str, capped: Optional[str]) -> str:
    """How the summary names the kernels' path, e.g. "AVX2, capped by TUNELAB_HOST_KERNELS_PATH"."""
    from . import host_kernels

    name = {"avx512": "AVX-512", "avx2": "AVX2", "portable": "portable loops"}[path]
    return f"{name}, capped by {host_kernels.PATH_ENV}={capped}" if capped else name


def _host_step(model: nn.Module, anatomy: Anatomy, first: int, options: FastOptions, random_anywhere: bool, needs: Dict[str, Decision]) -> Decision:
    from mlx_lm.tuner.lora import LoRALinear

    from .frozen_linear import block_projections

    if not options.host_step:
        return Decision(False, "turned off")
    for name, decision in needs.items():
        if not decision.applies:
            return Decision(False, f"needs {name}, which is off here")
    if random_anywhere:
        return Decision(False, "dropout draws random numbers inside the step")
    adapters = {}
    for module in block_projections(anatomy.blocks[first:]):
        if type(module) is LoRALinear:
            adapters[id(module.lora_a)] = module.lora_a
            adapters[id(module.lora_b)] = module.lora_b
    trainable = tree_flatten(model.trainable_parameters())
    if any(id(p) not in adapters for _, p in trainable):
        return Decision(False, "the model trains more than LoRA adapters on the adapted blocks' projections")
    if any(p.dtype != mx.float32 for p in adapters.values()):
        return Decision(False, "the LoRA adapters are not float32")
    return Decision(True, f"forward and backward of blocks {first}-{len(anatomy.blocks) - 1} and the head written out with NumPy and the native kernels (no MLX autodiff)")
