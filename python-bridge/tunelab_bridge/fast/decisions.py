"""Each fast-path optimisation's decision for one model and LoRA set-up: applies, or the sentence
saying why not. plan.py asks them in order; nothing here changes the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .anatomy import Anatomy

if TYPE_CHECKING:
    from .plan import FastOptions


@dataclass(frozen=True)
class Decision:
    applies: bool
    reason: str = ""

    def as_dict(self) -> Dict[str, object]:
        """The wire's Optimisation: used, the reason it is off (None when used), what it did."""
        return {"used": self.applies, "reason": None if self.applies else (self.reason or None), "detail": self.reason if self.applies else None}


# Where module classes that never draw random numbers live: mlx.nn's layers (the dropout family
# apart, checked by its probability) and the model families whose forward the fast path mirrors.
_DETERMINISTIC_MODULES = ("mlx.nn.layers.", "mlx_lm.models.llama", "mlx_lm.models.qwen2", "mlx_lm.models.qwen3", "mlx_lm.models.mistral", "mlx_lm.models.rope_utils", "mlx_lm.tuner.lora")
_DROPOUT = (nn.Dropout, nn.Dropout2d, nn.Dropout3d)


def _draws(module: nn.Module) -> Optional[str]:
    if isinstance(module, _DROPOUT):
        # mlx.nn's dropout keeps its keep probability (1 - p) in `_p_1`; anything else is unknown,
        # and unknown counts as drawing: a step that ignores dropout must never run by accident.
        keep = getattr(module, "_p_1", None)
        if not isinstance(keep, (int, float)) or isinstance(keep, bool):
            return f"a {type(module).__name__} whose probability tunelab cannot read"
        return f"dropout p={1 - keep:g}" if keep < 1.0 else None
    if not type(module).__module__.startswith(_DETERMINISTIC_MODULES):
        return f"{type(module).__qualname__} ({type(module).__module__}) is not known to be free of random draws"
    return None


def random_draws(module: nn.Module) -> Optional[str]:
    """None when no part of `module` draws random numbers in training mode; else a sentence naming
    the first part that does, or that cannot be shown not to (fails closed)."""
    for name, part in module.named_modules():
        why = _draws(part)
        if why:
            return f"{name or type(module).__name__}: {why}"
    return None


def has_trainable(module: nn.Module) -> bool:
    return len(tree_flatten(module.trainable_parameters())) > 0


def prefix_cache(options: "FastOptions", anatomy: Anatomy, adapted: List[int], first: int) -> Decision:
    if not options.prefix_cache:
        return Decision(False, "turned off (--no-prefix-cache)")
    if options.prefix_cache_mb <= 0:
        return Decision(False, "the activation budget is 0 MB")
    if has_trainable(anatomy.embed):
        return Decision(False, "the embedding is trained, so the blocks' inputs change every step")
    if not adapted:
        return Decision(False, "no block has trainable weights")
    if first == 0:
        return Decision(False, "adapters start at the first block, so there is no frozen prefix to reuse")
    below = random_draws(anatomy.embed) or next((w for w in (random_draws(b) for b in anatomy.blocks[:first]) if w), None)
    if below:
        return Decision(False, f"the blocks below block {first} may differ every step ({below})")
    return Decision(True, f"blocks 0-{first - 1} computed once per example")


def tail_queries(options: "FastOptions", anatomy: Anatomy, head: Decision, randomness: Optional[str], first: int) -> Decision:
    if not options.tail_queries:
        return Decision(False, "turned off")
    if not head.applies:
        return Decision(False, "needs the loss-position head")
    if randomness:
        return Decision(False, f"random draws depend on the padded batch shape ({randomness})")
    if not anatomy.tail_queries_supported():
        return Decision(False, "the last block is not a llama or qwen2 block whose code the fast path mirrors")
    if len(anatomy.blocks) - first < 1:
        return Decision(False, "the last block has no adapter")
    return Decision(True, "last block computed from the first loss position on")


# Dropout draws one random mask per element of the padded batch; changing the batch width or
# tracing the step would change which numbers are drawn, so both stay off with dropout.
def trim_padding(options: "FastOptions", randomness: Optional[str]) -> Decision:
    if not options.trim_padding:
        return Decision(False, "turned off")
    if randomness:
        return Decision(False, f"random draws depend on the padded batch shape ({randomness})")
    return Decision(True, "batches cut to their longest example; widths in multiples of 8 only when compiled")


def compiled(options: "FastOptions", randomness: Optional[str]) -> Decision:
    if randomness:
        return Decision(False, f"random numbers are drawn inside the step ({randomness})")
    if not options.compile:
        return Decision(False, "not by default: the uncompiled step with its host kernels measured faster on CPU")
    return Decision(True, "mx.compile of the blocks and logits (the softmax runs outside the trace)")


def host_computation_blocked(enabled: bool, options: "FastOptions", randomness: Optional[str], anatomy: Anatomy, first: int, on_gpu: str) -> Optional[Decision]:
    """Why a computation moved to the host cannot run in the adapted blocks (None: it can)."""
    if not enabled:
        return Decision(False, "turned off")
    if compiled(options, randomness).applies:
        return Decision(False, "the compiled step traces the blocks, and a host computation cannot be traced")
    if mx.default_device() != mx.cpu:
        return Decision(False, on_gpu)
    blocks = anatomy.blocks[first:]
    if not blocks or not all(anatomy.mirrors(b) for b in blocks):
        return Decision(False, "the adapted blocks are not llama or qwen2 blocks whose code the fast path mirrors")
    return None


def host_attention(anatomy: Anatomy, first: int, options: "FastOptions", randomness: Optional[str]) -> Decision:
    from .host_attention import supports

    blocked = host_computation_blocked(options.host_attention, options, randomness, anatomy, first, "the model runs on the GPU, where MLX's own attention kernels are fast")
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


def fused_head(model: nn.Module, anatomy: Anatomy, head: Decision, options: "FastOptions") -> Decision:
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


def native_linears(model: nn.Module, anatomy: Anatomy, first: int, options: "FastOptions", randomness: Optional[str]) -> Decision:
    from .frozen_linear import base_linear, block_projections

    blocked = host_computation_blocked(options.native_linears, options, randomness, anatomy, first, "the model runs on the GPU, where MLX's own products are fast")
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


def host_step(model: nn.Module, anatomy: Anatomy, first: int, options: "FastOptions", randomness: Optional[str], needs: Dict[str, Decision]) -> Decision:
    from mlx_lm.tuner.lora import LoRALinear

    from .frozen_linear import block_projections

    if not options.host_step:
        return Decision(False, "turned off")
    for name, decision in needs.items():
        if not decision.applies:
            return Decision(False, f"needs {name}, which is off here")
    if randomness:
        # The written-out step has no dropout: it must never run where something draws.
        return Decision(False, f"random numbers are drawn inside the step ({randomness})")
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
