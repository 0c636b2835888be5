"""Where a causal language model splits: embedding, transformer blocks, final norm, vocabulary head.

The fast path runs these pieces separately (frozen blocks once, adapted blocks every step, the
head only where the loss counts), so it must know that calling them in order is exactly what
the model's own `__call__` does. Only architectures whose forward is known to be that plain
chain are recognised; anything else gets no fast path (and `plan` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import mlx.core as mx
import mlx.nn as nn

# mlx-lm model types whose forward is: h = embed(x); mask = causal; h = block(h, mask, cache=None)
# for every block; logits = head(norm(h)), with head = lm_head or the tied embedding. Gemma-like
# models (embedding scale, logit soft-capping) and sliding-window stacks are deliberately absent.
PLAIN_CHAIN_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


@dataclass(frozen=True, eq=False)
class Anatomy:
    """The model's parts in forward order. Frozen: what runs them, and with which host
    replacements, is a BlockRunner (blocks.py) built from the plan."""

    embed: nn.Module
    blocks: Tuple[nn.Module, ...]
    norm: nn.Module
    head: Callable[[mx.array], mx.array]
    # The head's dense (vocab, hidden) matrix, for kernels that take it directly; None where the
    # head is not a plain matrix product (quantized, or with a bias).
    head_weight: Optional[mx.array] = None

    def embed_tokens(self, tokens: mx.array) -> mx.array:
        return self.embed(tokens)

    def logits(self, h: mx.array) -> mx.array:
        return self.head(self.norm(h))

    def mirrors(self, block: nn.Module) -> bool:
        """Whether BlockRunner can run this block through its own copy of the block's code."""
        return (type(block), type(getattr(block, "self_attn", None)), type(getattr(block, "mlp", None))) in _mirrored_blocks()

    def tail_queries_supported(self) -> bool:
        """Whether the last block can be run for the later positions only (its code is known)."""
        return self.mirrors(self.blocks[-1])


def _mirrored_blocks() -> frozenset:
    """(block, attention, MLP) classes whose forward `run_block` copies: llama's, and qwen2's, which
    is the same code with biases on q/k/v (the projections' own business) and no head_dim field."""
    from mlx_lm.models import llama, qwen2

    return frozenset({(llama.TransformerBlock, llama.Attention, llama.MLP), (qwen2.TransformerBlock, qwen2.Attention, qwen2.MLP)})


def head_dim(attn: nn.Module) -> Optional[int]:
    """The width of one attention head: llama's attention keeps it; qwen2's computes it in
    __init__ only, as o_proj's input width over the number of heads (None where unknown)."""
    width = getattr(attn, "head_dim", None)
    if width is not None:
        return int(width)
    from mlx_lm.tuner.lora import LoRALinear

    o_proj = getattr(attn, "o_proj", None)
    base = o_proj.linear if type(o_proj) is LoRALinear else o_proj
    n_heads = getattr(attn, "n_heads", None)
    if type(base) is not nn.Linear or not n_heads:
        return None
    return int(base.weight.shape[1]) // int(n_heads)


def mlx_rope_attention(attn: nn.Module, queries: mx.array, keys: mx.array, values: mx.array, start: int) -> mx.array:
    """llama.Attention's rope and attention for projected (B, span, H*d) queries and (B, L, Hkv*d)
    keys and values, queries at positions start.. seeing keys up to their own position."""
    batch, span, _ = queries.shape
    length = keys.shape[1]
    queries = queries.reshape(batch, span, attn.n_heads, -1).transpose(0, 2, 1, 3)
    keys = keys.reshape(batch, length, attn.n_kv_heads, -1).transpose(0, 2, 1, 3)
    values = values.reshape(batch, length, attn.n_kv_heads, -1).transpose(0, 2, 1, 3)
    queries = attn.rope(queries, offset=start)
    keys = attn.rope(keys)
    if start:
        mask = mx.arange(start, length)[:, None] >= mx.arange(length)[None, :]
    else:
        mask = "causal" if length > 1 else None
    out = mx.fast.scaled_dot_product_attention(queries, keys, values, scale=attn.scale, mask=mask)
    return out.transpose(0, 2, 1, 3).reshape(batch, span, -1)


def recognise(model: nn.Module) -> tuple[Optional[Anatomy], str]:
    """The model's anatomy, or None and the sentence saying why the fast path cannot split it."""
    model_type = getattr(model, "model_type", None) or getattr(getattr(model, "args", None), "model_type", None)
    if model_type not in PLAIN_CHAIN_MODEL_TYPES:
        return None, f"model type {model_type!r} is not one whose forward the fast path knows how to split"
    inner = getattr(model, "model", None)
    embed = getattr(inner, "embed_tokens", None)
    norm = getattr(inner, "norm", None)
    blocks = getattr(inner, "layers", None)
    if embed is None or norm is None or not blocks:
        return None, "the model lacks the embed_tokens/layers/norm layout the fast path splits on"
    layer_types = getattr(getattr(model, "args", None), "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types) or getattr(inner, "swa_idx", None) is not None:
        return None, "the model mixes sliding-window attention into its blocks"
    if getattr(getattr(model, "args", None), "tie_word_embeddings", False):
        head: Callable[[mx.array], mx.array] = lambda h: embed.as_linear(h)
        head_module = embed
    elif getattr(model, "lm_head", None) is not None:
        lm_head = model.lm_head
        head = lambda h: lm_head(h)
        head_module = lm_head
    else:
        return None, "the model has neither an lm_head nor tied embeddings"
    return Anatomy(embed=embed, blocks=tuple(blocks), norm=norm, head=head, head_weight=_dense_weight(head_module)), ""


def _dense_weight(module: nn.Module) -> Optional[mx.array]:
    """The module's (out, in) weight when its output is exactly x @ weight.T, else None."""
    if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)) or "scales" in module or "bias" in module:
        return None
    weight = module.get("weight")
    return weight if isinstance(weight, mx.array) and weight.ndim == 2 else None
