"""The adapted blocks' forward and backward written out on the host: one LoRA training step's
loss and adapter gradients with NumPy and the native kernels, without MLX's autodiff.

With every piece of the adapted blocks already on the host (frozen projections, RoPE +
attention, SwiGLU, the fused head), what MLX still did in a step was glue: building the graph,
evaluating it piece by piece (~60 hand-offs between MLX and NumPy per step on SmolLM2's 4
adapted blocks), and the small element-wise work in between (norms, residuals, the rank-8
LoRA products), ~20 ms of a ~73 ms step on a 2-core machine. Here the same arithmetic runs as
a straight sequence of NumPy calls, forward keeping what the backward needs.

It computes exactly what `Anatomy.run_block` + the fused head compute under
`nn.value_and_grad`, for llama and qwen2 blocks whose trainable parameters are mlx-lm
LoRALinear adapters (dropout 0) on plain float32 projections (a frozen bias, as qwen2's q/k/v
have, is part of the projection's native product):

    n1 = rms_norm(h) * w_in                       (mx.fast.rms_norm)
    q, k, v = proj(n1[start:]), proj(n1), proj(n1) proj(x) = x W^T + scale (x A) B
    a = attention(rope(q), rope(k), v)            (host_attention.HostAttention)
    h1 = h[start:] + proj_o(a)
    n2 = rms_norm(h1) * w_post
    out = h1 + proj_down(silu(proj_gate(n2)) * proj_up(n2))

and the head: final norm at the loss positions, cross-entropy over the vocabulary (fused kernel),
masked mean. `plan()` decides where this applies (fast/plan.py); elsewhere the step
stays on MLX's autodiff. The equivalence tests hold it to mlx-lm's own step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..parameter_slots import TrainableSlots
from . import host_math
from .anatomy import Anatomy
from .frozen_linear import BLOCK_PROJECTIONS, FrozenLinear, base_linear
from .fused_head import FusedHead
from .host_attention import HostAttention


# Adapter gradients keyed by (id() of the LoRALinear, "lora_a" or "lora_b").
Grads = Dict[Tuple[int, str], np.ndarray]


class _Projection:
    """One of a block's projections: the frozen product natively, plus mlx-lm's LoRA term
    scale * (x A) B where the module is a LoRALinear."""

    def __init__(self, module: nn.Module, native: FrozenLinear):
        from mlx_lm.tuner.lora import LoRALinear

        self.native = native
        self.lora: Optional[nn.Module] = module if type(module) is LoRALinear else None
        self.scale = np.float32(self.lora.scale) if self.lora is not None else None

    def adapters(self) -> Tuple[np.ndarray, np.ndarray]:
        """The current (A, B) as NumPy views of MLX's arrays (they change every step)."""
        return np.asarray(self.lora.lora_a), np.asarray(self.lora.lora_b)

    def forward(self, x: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(x W^T + scale (x A) B, x A or None) for rows x (M, in)."""
        y = self.native.forward(x)
        if self.lora is None:
            return y, None
        a, b = self.adapters()
        xa = x @ a
        y += self.scale * (xa @ b)
        return y, xa

    def backward(self, x: np.ndarray, xa: Optional[np.ndarray], dy: np.ndarray, grads: Grads, input_gradient: bool = True) -> Optional[np.ndarray]:
        """The input's cotangent (None when not wanted); the adapters' gradients go into `grads`
        keyed by (id() of the LoRA module, "lora_a" / "lora_b")."""
        dx = self.native.backward(dy) if input_gradient else None
        if self.lora is None:
            return dx
        a, b = self.adapters()
        dz = dy * self.scale
        grads[(id(self.lora), "lora_b")] = xa.T @ dz
        dxa = dz @ b.T
        grads[(id(self.lora), "lora_a")] = x.T @ dxa
        if dx is not None:
            dx += dxa @ a.T
        return dx


@dataclass
class _Block:
    q: _Projection
    k: _Projection
    v: _Projection
    o: _Projection
    gate: _Projection
    up: _Projection
    down: _Projection
    attention: HostAttention
    input_norm: np.ndarray
    input_eps: float
    post_norm: np.ndarray
    post_eps: float


class HostStep:
    """Loss and adapter gradients of the blocks from `first` on, given their input (B, L, D)."""

    def __init__(self, model: nn.Module, anatomy: Anatomy, first: int, head: FusedHead, linears: Dict[int, FrozenLinear], attentions: Dict[int, HostAttention]):
        self.model = model
        self.blocks: List[_Block] = []
        for block in anatomy.blocks[first:]:
            parts = {name: _Projection(getattr(getattr(block, part), name), linears[id(base_linear(getattr(getattr(block, part), name)))]) for part, name in BLOCK_PROJECTIONS}
            self.blocks.append(
                _Block(
                    q=parts["q_proj"], k=parts["k_proj"], v=parts["v_proj"], o=parts["o_proj"],
                    gate=parts["gate_proj"], up=parts["up_proj"], down=parts["down_proj"],
                    attention=attentions[id(block.self_attn)],
                    input_norm=_frozen(block.input_layernorm.weight), input_eps=float(block.input_layernorm.eps),
                    post_norm=_frozen(block.post_attention_layernorm.weight), post_eps=float(block.post_attention_layernorm.eps),
                )
            )
        self.final_norm, self.final_eps = _frozen(anatomy.norm.weight), float(anatomy.norm.eps)
        self.head = head
        # The gradient tree's shape, and which adapter each of its leaves is (plan() checked that
        # the trainable parameters are exactly these adapters).
        self.trainable = TrainableSlots(model)
        self._leaf_keys = [(id(container), key) for container, key in self.trainable.slots]

    def loss_and_grad(self, *args, **kwargs):
        """(loss, grads) like `nn.value_and_grad(model, loss)` of the fast path's loss: grads is
        the tree of the model's trainable parameters (None without gradient). Arguments as
        `_loss_and_grad`'s."""
        # A diverging run carries infinities and NaNs, which MLX propagates silently (the training
        # loop stops on a NaN loss with its own message); so does this.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._loss_and_grad(*args, **kwargs)

    def _loss_and_grad(self, hidden: mx.array, positions: mx.array, targets: mx.array, weights: mx.array, ntoks: mx.array, tail_start: int, with_gradient: bool = True):
        """hidden: the first host block's input (B, L, D); positions, targets, weights: the loss
        rows (flat indices into the last block's output); tail_start: where the last block's
        queries start."""
        mx.eval(hidden, positions, targets, weights, ntoks)
        h = np.asarray(hidden)
        dim = h.shape[-1]
        saved = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            start = tail_start if i == last else 0
            h, state = self._block_forward(block, h, start, keep=with_gradient)
            saved.append(state)
        rows_at = np.asarray(positions)
        rows = h.reshape(-1, dim)[rows_at]
        normed, inv = host_math.rms_norm(rows, self.final_norm, self.final_eps)
        ce, d_ce_d_normed = self.head.compute(normed, np.asarray(targets), with_gradient)
        w = np.asarray(weights).astype(np.float32)
        count = np.float32(np.asarray(ntoks))
        loss = mx.array((ce * w).sum(dtype=np.float32) / count)
        if not with_gradient:
            return loss, None
        d_normed = d_ce_d_normed * (w / count)[:, None]
        d_h = np.zeros((h.shape[0] * h.shape[1], dim), dtype=np.float32)
        d_h[rows_at] = host_math.rms_norm_backward(rows, inv, self.final_norm, d_normed)
        d_h = d_h.reshape(h.shape)
        grads: Grads = {}
        for i in range(last, -1, -1):
            d_h = self._block_backward(self.blocks[i], saved[i], d_h, grads, input_gradient=i > 0)
        return loss, self.trainable.tree([mx.array(grads[key]) for key in self._leaf_keys])

    def _block_forward(self, block: _Block, h: np.ndarray, start: int, keep: bool):
        batch, length, dim = h.shape
        span = length - start
        flat = h.reshape(-1, dim)
        n1, inv1 = host_math.rms_norm(flat, block.input_norm, block.input_eps)
        n1_tail = n1.reshape(batch, length, dim)[:, start:].reshape(-1, dim) if start else n1
        q, q_a = block.q.forward(n1_tail)
        k, k_a = block.k.forward(n1)
        v, v_a = block.v.forward(n1)
        attended, *attention_saved = block.attention.forward(q.reshape(batch, span, -1), k.reshape(batch, length, -1), v.reshape(batch, length, -1), start)
        attended = attended.reshape(batch * span, -1)
        o, o_a = block.o.forward(attended)
        h1 = h[:, start:].reshape(-1, dim) + o if start else flat + o
        n2, inv2 = host_math.rms_norm(h1, block.post_norm, block.post_eps)
        gate, gate_a = block.gate.forward(n2)
        up, up_a = block.up.forward(n2)
        activated, partials = host_math.swiglu(gate, up)
        down, down_a = block.down.forward(activated)
        out = (h1 + down).reshape(batch, span, dim)
        if not keep:
            return out, None
        state = dict(
            start=start, flat=flat, inv1=inv1, n1=n1, n1_tail=n1_tail, q_a=q_a, k_a=k_a, v_a=v_a,
            attention=attention_saved, attended=attended, o_a=o_a, h1=h1, n2=n2, inv2=inv2,
            gate_a=gate_a, up_a=up_a, partials=partials, activated=activated, down_a=down_a,
        )
        return out, state

    def _block_backward(self, block: _Block, s: dict, d_out: np.ndarray, grads: Grads, input_gradient: bool) -> Optional[np.ndarray]:
        batch, span, dim = d_out.shape
        start = s["start"]
        length = span + start
        d_h1 = d_out.reshape(-1, dim)
        d_activated = block.down.backward(s["activated"], s["down_a"], d_h1, grads)
        d_gate, d_up = host_math.swiglu_backward(s["partials"], d_activated)
        d_n2 = block.gate.backward(s["n2"], s["gate_a"], d_gate, grads)
        d_n2 += block.up.backward(s["n2"], s["up_a"], d_up, grads)
        d_h1 = d_h1 + host_math.rms_norm_backward(s["h1"], s["inv2"], block.post_norm, d_n2)
        d_attended = block.o.backward(s["attended"], s["o_a"], d_h1, grads)
        d_q, d_k, d_v = block.attention.backward(d_attended.reshape(batch, span, -1), *s["attention"], start)
        d_q, d_k, d_v = d_q.reshape(batch * span, -1), d_k.reshape(batch * length, -1), d_v.reshape(batch * length, -1)
        # The first adapted block's input is the frozen blocks' output: only its adapters need
        # the cotangents of q, k and v, not the input.
        d_n1_tail = block.q.backward(s["n1_tail"], s["q_a"], d_q, grads, input_gradient)
        d_n1 = block.k.backward(s["n1"], s["k_a"], d_k, grads, input_gradient)
        d_v_in = block.v.backward(s["n1"], s["v_a"], d_v, grads, input_gradient)
        if not input_gradient:
            return None
        d_n1 += d_v_in
        d_n1 = d_n1.reshape(batch, length, dim)
        d_n1[:, start:] += d_n1_tail.reshape(batch, span, dim)
        d_h = host_math.rms_norm_backward(s["flat"], s["inv1"], block.input_norm, d_n1.reshape(-1, dim)).reshape(batch, length, dim)
        d_h[:, start:] += d_h1.reshape(batch, span, dim)
        return d_h


def _frozen(weight: mx.array) -> np.ndarray:
    mx.eval(weight)
    return np.array(weight, dtype=np.float32)
