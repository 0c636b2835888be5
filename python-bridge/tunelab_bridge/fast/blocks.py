"""Running a model's blocks the way the fast path runs them: llama and qwen2 blocks through a copy
of their code, with the host replacements the plan chose; any other block as it is.

The copy exists so that (a) the last block can run queries from the first loss position on while
every position still supplies keys and values (tail queries), and (b) SwiGLU, RoPE + attention and
the frozen projections can be swapped for exact equivalents that are faster on this device. The
arithmetic is mlx-lm's `TransformerBlock.__call__`; the equivalence tests hold it to mlx-lm's step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import mlx.core as mx
import mlx.nn as nn

from .anatomy import Anatomy, mlx_rope_attention

Activation = Callable[[mx.array, mx.array], mx.array]


def _mlx_lm_swiglu(gate: mx.array, up: mx.array) -> mx.array:
    from mlx_lm.models.activations import swiglu

    return swiglu(gate, up)


@dataclass(frozen=True, eq=False)
class BlockRunner:
    anatomy: Anatomy
    # SwiGLU of the mirrored blocks (mlx-lm's by default; host_ops.swiglu computes it with NumPy).
    swiglu: Activation = _mlx_lm_swiglu
    # Replacements for frozen linear layers inside mirrored blocks, keyed by id() of the layer
    # (frozen_linear.py); a LoRALinear whose base layer is here keeps its adapter in MLX.
    frozen_linears: Dict[int, Callable[[mx.array], mx.array]] = field(default_factory=dict)
    # RoPE + attention for mirrored blocks, keyed by id() of the block's attention module
    # (host_attention.py): f(q, k, v, start) from the projections to o_proj's input.
    host_attention: Dict[int, Callable[..., mx.array]] = field(default_factory=dict)

    def run_blocks(self, h: mx.array, start: int, stop: Optional[int] = None) -> mx.array:
        for block in self.anatomy.blocks[start:stop]:
            h = self.run_block(block, h)
        return h

    def run_last_block_from(self, h: mx.array, start: int) -> mx.array:
        return self.run_block(self.anatomy.blocks[-1], h, start)

    def run_block(self, block: nn.Module, h: mx.array, start: int = 0) -> mx.array:
        """The block's output at positions start.. (all of them by default); blocks that are
        not mirrored are called as they are (start must then be 0)."""
        if not self.anatomy.mirrors(block):
            assert start == 0, "only mirrored blocks run from a later position"
            return block(h, "causal" if h.shape[1] > 1 else None, cache=None)
        attn = block.self_attn
        normed = block.input_layernorm(h)
        queries = self._project(attn.q_proj, normed[:, start:] if start else normed)
        keys = self._project(attn.k_proj, normed)
        values = self._project(attn.v_proj, normed)
        host_attention = self.host_attention.get(id(attn))
        if host_attention is not None and queries.dtype == mx.float32:
            # Computed in float32 on the host: only exact where the activations are float32.
            out = host_attention(queries, keys, values, start)
        else:
            out = mlx_rope_attention(attn, queries, keys, values, start)
        hidden = (h[:, start:] if start else h) + self._project(attn.o_proj, out)
        mlp = block.mlp
        normed = block.post_attention_layernorm(hidden)
        gate, up = self._project(mlp.gate_proj, normed), self._project(mlp.up_proj, normed)
        return hidden + self._project(mlp.down_proj, self.swiglu(gate, up))

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
