"""A llama (or qwen2) block's rotary embedding and attention computed on the host with NumPy.

With ~60 tokens the attention of a SmolLM2-sized block is ~8 MFLOP, yet in MLX on x86 it costs
more than the block's projections: MLX's CPU backend computes RoPE's sin/cos and the softmax's
exp one element at a time (~15 ns each), and the head-major transposes around them are copies.
Here the whole span from the projected q, k, v to the input of o_proj is one
`mx.custom_function`: RoPE from a cached cos/sin table, grouped-query attention as stacked
matrix products, a vectorised softmax, and the output already laid out (B, span, heads * dim).
The forward also returns what the backward needs (rotated q and k, v, the softmax P), so the
backward is products and the inverse rotation, with nothing recomputed.

The same arithmetic as `Anatomy.run_block`'s MLX path:

    queries = rope(q, offset=start); keys = rope(k)
    out = scaled_dot_product_attention(queries, keys, values, scale, mask)

where query i (position start + i) sees key positions <= start + i ("causal" when start is 0).
Only `mlx.nn.RoPE` with traditional=False, scale 1.0 and dims == head dim is mirrored here
(`supports` says which attention modules qualify). The forward evaluates its inputs mid-graph,
so this runs outside `mx.compile` traces.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Tuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .anatomy import head_dim
from .host_buffers import to_host


def supports(attn: nn.Module) -> bool:
    """Whether this attention module's rotary embedding is the kind mirrored here."""
    rope = getattr(attn, "rope", None)
    width = head_dim(attn)
    return (
        type(rope) is nn.RoPE
        and not rope.traditional
        and float(rope.scale) == 1.0
        and width is not None
        and rope.dims == width
        and width % 2 == 0
    )


class RopeTable:
    """cos and sin of position * base^(-2i/dims) for i < dims/2, for positions 0..length-1, laid
    out over the full head width as `_rotate` takes them; grown on demand and kept, so each
    length's angles are computed once per run."""

    def __init__(self, dims: int, base: float):
        self.half = dims // 2
        # As MLX's rope computes them: the inverse frequencies and angles in float32.
        self.inv_freq = np.exp(np.arange(self.half, dtype=np.float32) * np.float32(-np.log(base) / self.half)).astype(np.float32)
        self.cos = np.empty((0, dims), dtype=np.float32)
        self.sin = np.empty((0, dims), dtype=np.float32)

    def upto(self, length: int) -> Tuple[np.ndarray, np.ndarray]:
        """(cos, cos) and (-sin, sin) per position, each (length, dims)."""
        if length > self.cos.shape[0]:
            grown = max(length, 2 * self.cos.shape[0], 64)
            angles = (np.arange(grown, dtype=np.float32)[:, None] * self.inv_freq[None, :]).astype(np.float64)
            cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
            self.cos = np.concatenate([cos, cos], axis=1)
            self.sin = np.concatenate([-sin, sin], axis=1)
        return self.cos[:length], self.sin[:length]


def _rotate(x: np.ndarray, cos: np.ndarray, signed_sin: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Non-traditional RoPE of x (..., positions, heads, dims) with RopeTable's rows broadcast as
    (positions, 1, dims): halves x1, x2 become x1 cos - x2 sin, x2 cos + x1 sin, i.e.
    x * (cos, cos) + (x2, x1) * (-sin, sin). The inverse rotation (the backward pass) subtracts
    the second term instead. Whole-width products: twice as fast as four half-width ones."""
    half = x.shape[-1] // 2
    swapped = np.empty(x.shape, dtype=np.float32)
    swapped[..., :half] = x[..., half:]
    swapped[..., half:] = x[..., :half]
    swapped *= signed_sin
    y = np.multiply(x, cos, dtype=np.float32)
    if inverse:
        y -= swapped
    else:
        y += swapped
    return y


def _device(a: np.ndarray, dtype: mx.Dtype) -> mx.array:
    out = mx.array(a)
    return out if dtype == mx.float32 else out.astype(dtype)


class HostAttention:
    """rope + grouped-query causal attention for one (heads, kv heads, head dim, base, scale)
    configuration; call with the projected q (B, span, H*d), k and v (B, L, Hkv*d) and `start`."""

    def __init__(self, n_heads: int, n_kv_heads: int, head_dim: int, base: float, scale: float):
        if n_heads % n_kv_heads:
            raise ValueError(f"{n_heads} query heads do not group evenly over {n_kv_heads} key/value heads")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.group = n_heads // n_kv_heads
        self.scale = float(scale)
        self.table = RopeTable(head_dim, base)
        self._causal = np.zeros((0, 0), dtype=np.float32)
        self._functions: Dict[int, Callable[..., Tuple[mx.array, ...]]] = {}

    @classmethod
    def of(cls, attn: nn.Module) -> "HostAttention":
        return cls(attn.n_heads, attn.n_kv_heads, head_dim(attn), attn.rope.base, attn.scale)

    def __call__(self, q: mx.array, k: mx.array, v: mx.array, start: int = 0) -> mx.array:
        """The attention output (B, span, H*d) at positions start.., ready for o_proj."""
        function = self._functions.get(start)
        if function is None:
            function = self._functions[start] = self._make_custom_function(start)
        return function(q, k, v)[0]

    def _mask(self, start: int, length: int) -> np.ndarray:
        """(length - start, length): 0 where query i (position start + i) may see key j, -inf
        where j is later. Slices of one triangle, grown on demand, so that varying tail starts
        and lengths do not each keep a mask."""
        if length > self._causal.shape[0]:
            size = max(length, 2 * self._causal.shape[0], 64)
            self._causal = np.triu(np.full((size, size), -np.inf, dtype=np.float32), k=1)
        return self._causal[start:length, :length]

    def forward(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int) -> Tuple[np.ndarray, ...]:
        """(out (B, span, H*d), rotated q (B, Hkv, group*span, d), rotated k (B, Hkv, L, d),
        v (B, Hkv, L, d), softmax P transposed (B, Hkv, L, group*span)). Query head h uses
        key/value head h // group, as MLX's attention groups them, so each key/value head's query
        heads stack into one matrix.

        The scores are laid out keys-major, so the softmax's max and sum run over the outer axis:
        whole rows of queries at a time, rather than one short reduction per query."""
        batch, span, _ = q.shape
        length = k.shape[1]
        hkv, group, d = self.n_kv_heads, self.group, self.head_dim
        cos, sin = self.table.upto(length)
        cos, sin = cos[:, None, :], sin[:, None, :]
        rotated_q = _rotate(q.reshape(batch, span, self.n_heads, d), cos[start:], sin[start:])
        rotated_k = _rotate(k.reshape(batch, length, hkv, d), cos, sin)
        queries = np.ascontiguousarray(rotated_q.transpose(0, 2, 1, 3)).reshape(batch, hkv, group * span, d)
        keys = np.ascontiguousarray(rotated_k.transpose(0, 2, 1, 3))
        values = np.ascontiguousarray(v.reshape(batch, length, hkv, d).transpose(0, 2, 1, 3))
        # BLAS through NumPy's stacked matmul is ~2x slower with a transposed view than with a copy.
        scores = np.matmul(keys, np.ascontiguousarray(queries.transpose(0, 1, 3, 2)))
        scores *= np.float32(self.scale)
        scores.reshape(batch, hkv, length, group, span)[...] += self._mask(start, length).T[:, None, :]
        scores -= scores.max(axis=-2, keepdims=True)
        probs = np.exp(scores, out=scores)
        probs /= probs.sum(axis=-2, keepdims=True)
        out = np.matmul(probs.transpose(0, 1, 3, 2), values)
        out = out.reshape(batch, self.n_heads, span, d).transpose(0, 2, 1, 3).reshape(batch, span, self.n_heads * d)
        return out, queries, keys, values, probs

    def backward(self, d_out: np.ndarray, queries: np.ndarray, keys: np.ndarray, values: np.ndarray, probs: np.ndarray, start: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cotangents of the projected q, k, v from the output's, through attention and RoPE
        (the probabilities and their cotangents keys-major, as in `forward`)."""
        batch, span, _ = d_out.shape
        length = keys.shape[2]
        hkv, group, d = self.n_kv_heads, self.group, self.head_dim
        d_o = np.ascontiguousarray(d_out.reshape(batch, span, self.n_heads, d).transpose(0, 2, 1, 3)).reshape(batch, hkv, group * span, d)
        # The stacked layout sums each key/value head's gradient over its query heads in the product.
        d_values = np.matmul(probs, d_o)
        d_probs = np.matmul(values, np.ascontiguousarray(d_o.transpose(0, 1, 3, 2)))
        # Softmax backward: dS = P * (dP - sum_keys dP P); masked entries have P = 0, hence dS = 0.
        d_probs -= (d_probs * probs).sum(axis=-2, keepdims=True)
        d_scores = np.multiply(d_probs, probs, out=d_probs)
        d_scores *= np.float32(self.scale)
        d_queries = np.matmul(d_scores.transpose(0, 1, 3, 2), keys)
        d_keys = np.matmul(d_scores, queries)
        cos, sin = self.table.upto(length)
        cos, sin = cos[:, None, :], sin[:, None, :]
        d_q = _rotate(d_queries.reshape(batch, self.n_heads, span, d).transpose(0, 2, 1, 3), cos[start:], sin[start:], inverse=True)
        d_k = _rotate(d_keys.transpose(0, 2, 1, 3), cos, sin, inverse=True)
        d_v = d_values.transpose(0, 2, 1, 3)
        return d_q.reshape(batch, span, -1), d_k.reshape(batch, length, -1), np.ascontiguousarray(d_v).reshape(batch, length, -1)

    def _make_custom_function(self, start: int) -> Callable[..., Tuple[mx.array, ...]]:
        @mx.custom_function
        def attention(q: mx.array, k: mx.array, v: mx.array) -> Tuple[mx.array, ...]:
            # Evaluates its inputs mid-graph: allowed under value_and_grad, not inside mx.compile.
            mx.eval(q, k, v)
            # A diverging run carries infinities, which MLX propagates silently; so does this.
            with np.errstate(invalid="ignore", over="ignore"):
                out, *saved = self.forward(to_host(q), to_host(k), to_host(v), start)
            return (_device(out, q.dtype), *(mx.array(s) for s in saved))

        @attention.vjp
        def attention_vjp(primals, cotangents, outputs):
            q, k, v = primals
            d_out = cotangents[0]
            mx.eval(d_out)
            with np.errstate(invalid="ignore", over="ignore"):
                d_q, d_k, d_v = self.backward(to_host(d_out), *(np.asarray(s) for s in outputs[1:]), start)
            return _device(d_q, q.dtype), _device(d_k, k.dtype), _device(d_v, v.dtype)

        return attention


def host_attentions(blocks: Iterable[nn.Module]) -> Dict[int, HostAttention]:
    """Host attention for each of these mirrored blocks whose rotary embedding is supported, keyed
    by id() of its attention module (the key Anatomy.run_block looks up); blocks with the same
    configuration share one (and its cos/sin table)."""
    shared: Dict[tuple, HostAttention] = {}
    out: Dict[int, HostAttention] = {}
    for block in blocks:
        attn = getattr(block, "self_attn", None)
        if attn is None or not supports(attn):
            continue
        config = (attn.n_heads, attn.n_kv_heads, head_dim(attn), float(attn.rope.base), float(attn.scale))
        if config not in shared:
            shared[config] = HostAttention.of(attn)
        out[id(attn)] = shared[config]
    return out
