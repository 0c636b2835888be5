"""Where a causal language model splits: embedding, transformer blocks, final norm, vocabulary head.

The fast path runs these pieces separately (frozen blocks once, adapted blocks every step, the
head only where the loss counts), so it must know that calling them in order is exactly what
the model's own `__call__` does. Only architectures whose forward is known to be that plain
chain are recognised; anything else gets no fast path (and `plan` says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import mlx.core as mx
import mlx.nn as nn

# mlx-lm model types whose forward is: h = embed(x); mask = causal; h = block(h, mask, cache=None)
# for every block; logits = head(norm(h)), with head = lm_head or the tied embedding. Gemma-like
# models (embedding scale, logit soft-capping) and sliding-window stacks are deliberately absent.
PLAIN_CHAIN_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


Activation = Callable[[mx.array, mx.array], mx.array]


@dataclass
class Anatomy:
    embed: nn.Module
    blocks: List[nn.Module]
    norm: nn.Module
    head: Callable[[mx.array], mx.array]
    # SwiGLU for the blocks the fast path runs through `run_block`'s mirror of the block code
    # (None: mlx-lm's own). host_ops.swiglu is the same function computed with NumPy.
    swiglu: Optional[Activation] = None
    # The head's dense (vocab, hidden) matrix, for kernels that take it directly; None where the
    # head is not a plain matrix product (quantized, or with a bias).
    head_weight: Optional[mx.array] = None
    # Replacements for frozen linear layers inside mirrored blocks, keyed by id() of the layer
    # (fast/frozen_linear.py); a LoRALinear whose base layer is here keeps its adapter in MLX.
    frozen_linears: Dict[int, Callable[[mx.array], mx.array]] = field(default_factory=dict)
    # RoPE + attention for mirrored blocks, keyed by id() of the block's attention module
    # (fast/host_attention.py): f(q, k, v, start) from the projections to o_proj's input.
    host_attention: Dict[int, Callable[..., mx.array]] = field(default_factory=dict)

    def embed_tokens(self, tokens: mx.array) -> mx.array:
        return self.embed(tokens)

    def run_blocks(self, h: mx.array, start: int, stop: Optional[int] = None) -> mx.array:
        for block in self.blocks[start:stop]:
            h = self.run_block(block, h)
        return h

    def logits(self, h: mx.array) -> mx.array:
        return self.head(self.norm(h))

    def mirrors(self, block: nn.Module) -> bool:
        """Whether `run_block` can run this block through its own copy of the block's code."""
        return (type(block), type(getattr(block, "self_attn", None)), type(getattr(block, "mlp", None))) in _mirrored_blocks()

    def tail_queries_supported(self) -> bool:
        """Whether the last block can be run for the later positions only (its code is known)."""
        return self.mirrors(self.blocks[-1])

    def run_last_block_from(self, h: mx.array, start: int) -> mx.array:
        return self.run_block(self.blocks[-1], h, start)

    def run_block(self, block: nn.Module, h: mx.array, start: int = 0) -> mx.array:
        """The block's output at positions start.. (all of them by default).

        For llama and qwen2 blocks this is the same arithmetic as their `TransformerBlock.__call__`,
        written out so that (a) from `start` > 0 only the positions the loss can look at run queries,
        the output projection and the MLP, while every position still supplies keys and values,
        and (b) the SwiGLU and the rope + attention can be swapped for exact equivalents that are
        faster on this device.
        Other blocks are called as they are (start must then be 0)."""
        if not self.mirrors(block):
            assert start == 0, "only mirrored blocks run from a later position"
            return block(h, "causal" if h.shape[1] > 1 else None, cache=None)
        attn = block.self_attn
        normed = block.input_layernorm(h)
        queries = self._project(attn.q_proj, normed[:, start:] if start else normed)
        keys = self._project(attn.k_proj, normed)
        values = self._project(attn.v_proj, normed)
        host_attention = self.host_attention.get(id(attn)) if self.host_attention else None
        if host_attention is not None and queries.dtype == mx.float32:
            # Computed in float32 on the host: only exact where the activations are float32.
            out = host_attention(queries, keys, values, start)
        else:
            out = mlx_rope_attention(attn, queries, keys, values, start)
        hidden = (h[:, start:] if start else h) + self._project(attn.o_proj, out)
        mlp = block.mlp
        normed = block.post_attention_layernorm(hidden)
        gate, up = self._project(mlp.gate_proj, normed), self._project(mlp.up_proj, normed)
        activated = self.swiglu(gate, up) if self.swiglu is not None else _mlx_lm_swiglu(gate, up)
        return hidden + self._project(mlp.down_proj, activated)

    def _project(self, module: nn.Module, x: mx.array) -> mx.array:
        """module(x), through its replacement in `frozen_linears` where it has one."""
        if not self.frozen_linears:
            return module(x)
        replacement = self.frozen_linears.get(id(module))
        if replacement is not None:
            return replacement(x)
        from mlx_lm.tuner.lora import LoRALinear

        if type(module) is LoRALinear and id(module.linear) in self.frozen_linears:
            # LoRALinear.__call__ with its frozen product replaced; the adapter stays in MLX.
            y = self.frozen_linears[id(module.linear)](x)
            z = (module.dropout(x) @ module.lora_a) @ module.lora_b
            return y + (module.scale * z).astype(x.dtype)
        return module(x)


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


def _mlx_lm_swiglu(gate: mx.array, up: mx.array) -> mx.array:
    from mlx_lm.models.activations import swiglu

    return swiglu(gate, up)


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
    return Anatomy(embed=embed, blocks=list(blocks), norm=norm, head=head, head_weight=_dense_weight(head_module)), ""


def _dense_weight(module: nn.Module) -> Optional[mx.array]:
    """The module's (out, in) weight when its output is exactly x @ weight.T, else None."""
    if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)) or "scales" in module or "bias" in module:
        return None
    weight = module.get("weight")
    return weight if isinstance(weight, mx.array) and weight.ndim == 2 else None
