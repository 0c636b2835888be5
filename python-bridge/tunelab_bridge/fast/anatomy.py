"""Where a causal language model splits: embedding, transformer blocks, final norm, vocabulary head.

The fast path runs these pieces separately (frozen blocks once, adapted blocks every step, the
head only where the loss counts), so it must know that calling them in order is exactly what
the model's own `__call__` does. Only architectures whose forward is known to be that plain
chain are recognised; anything else gets no fast path (and `plan` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import mlx.core as mx
import mlx.nn as nn

# mlx-lm model types whose forward is: h = embed(x); mask = causal; h = block(h, mask, cache=None)
# for every block; logits = head(norm(h)), with head = lm_head or the tied embedding. Gemma-like
# models (embedding scale, logit soft-capping) and sliding-window stacks are deliberately absent.
PLAIN_CHAIN_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


@dataclass
class Anatomy:
    embed: nn.Module
    blocks: List[nn.Module]
    norm: nn.Module
    head: Callable[[mx.array], mx.array]

    def embed_tokens(self, tokens: mx.array) -> mx.array:
        return self.embed(tokens)

    def run_blocks(self, h: mx.array, start: int, stop: Optional[int] = None) -> mx.array:
        mask = "causal" if h.shape[1] > 1 else None
        for block in self.blocks[start:stop]:
            h = block(h, mask, cache=None)
        return h

    def logits(self, h: mx.array) -> mx.array:
        return self.head(self.norm(h))

    def tail_queries_supported(self) -> bool:
        """Whether the last block can be run for the later positions only (its code is known)."""
        from mlx_lm.models import llama

        last = self.blocks[-1]
        return type(last) is llama.TransformerBlock and type(last.self_attn) is llama.Attention

    def run_last_block_from(self, h: mx.array, start: int) -> mx.array:
        """The last block's output at positions start.. only: every position still supplies keys
        and values, but queries, the output projection and the MLP run only where the loss can
        look. Same arithmetic as `llama.TransformerBlock` restricted to those rows."""
        block = self.blocks[-1]
        attn = block.self_attn
        batch, length, _ = h.shape
        span = length - start
        normed = block.input_layernorm(h)
        queries = attn.q_proj(normed[:, start:]).reshape(batch, span, attn.n_heads, -1).transpose(0, 2, 1, 3)
        keys = attn.k_proj(normed).reshape(batch, length, attn.n_kv_heads, -1).transpose(0, 2, 1, 3)
        values = attn.v_proj(normed).reshape(batch, length, attn.n_kv_heads, -1).transpose(0, 2, 1, 3)
        queries = attn.rope(queries, offset=start)
        keys = attn.rope(keys)
        mask = mx.arange(start, length)[:, None] >= mx.arange(length)[None, :]
        out = mx.fast.scaled_dot_product_attention(queries, keys, values, scale=attn.scale, mask=mask)
        out = out.transpose(0, 2, 1, 3).reshape(batch, span, -1)
        tail = h[:, start:] + attn.o_proj(out)
        return tail + block.mlp(block.post_attention_layernorm(tail))


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
    elif getattr(model, "lm_head", None) is not None:
        lm_head = model.lm_head
        head = lambda h: lm_head(h)
    else:
        return None, "the model has neither an lm_head nor tied embeddings"
    return Anatomy(embed=embed, blocks=list(blocks), norm=norm, head=head), ""
