"""The host RoPE + attention (fast/host_attention.py) against the MLX path Anatomy.run_block
takes otherwise (mlx.nn.RoPE + mx.fast.scaled_dot_product_attention): the output and the
gradients of the projected q, k and v, from the first position and from a later one."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from tunelab_bridge.fast.anatomy import mlx_rope_attention
from tunelab_bridge.fast.host_attention import HostAttention, host_attentions, supports

HEAD_DIM = 64
BASE = 100000.0  # SmolLM2's rope_theta


class Attention(nn.Module):
    """The attributes of mlx-lm's llama.Attention that the two paths read."""

    def __init__(self, n_heads: int, n_kv_heads: int, rope: nn.Module, head_dim: int = HEAD_DIM):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.scale = head_dim**-0.5
        self.rope = rope


def cases():
    for heads, kv_heads in [(9, 3), (4, 4)]:
        for batch in [1, 3]:
            for length in [1, 7, 60]:
                for start in sorted({0, length // 2, length - 1}):
                    yield pytest.param(heads, kv_heads, batch, length, start, id=f"{heads}/{kv_heads}-B{batch}-L{length}-from{start}")


@pytest.mark.parametrize("heads,kv_heads,batch,length,start", list(cases()))
def test_output_and_gradients_match_mlx(heads: int, kv_heads: int, batch: int, length: int, start: int) -> None:
    attn = Attention(heads, kv_heads, nn.RoPE(HEAD_DIM, traditional=False, base=BASE))
    host = HostAttention.of(attn)
    span = length - start
    mx.random.seed(length * 10 + start)
    q = mx.random.normal((batch, span, heads * HEAD_DIM))
    k = mx.random.normal((batch, length, kv_heads * HEAD_DIM))
    v = mx.random.normal((batch, length, kv_heads * HEAD_DIM))
    cotangent = mx.random.normal((batch, span, heads * HEAD_DIM))

    reference = mx.vjp(lambda q, k, v: mlx_rope_attention(attn, q, k, v, start), [q, k, v], [cotangent])
    candidate = mx.vjp(lambda q, k, v: host(q, k, v, start), [q, k, v], [cotangent])
    (ref_out,), ref_grads = reference
    (out,), grads = candidate
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    np.testing.assert_allclose(np.array(out), np.array(ref_out), rtol=1e-5, atol=1e-5)
    for name, got, ref in zip("qkv", grads, ref_grads):
        assert got.shape == ref.shape, name
        np.testing.assert_allclose(np.array(got), np.array(ref), rtol=1e-5, atol=2e-5, err_msg=f"d{name}")


def test_each_query_sees_only_earlier_keys() -> None:
    # Changing the last position's key and value changes the last output only.
    host = HostAttention.of(Attention(4, 2, nn.RoPE(HEAD_DIM, base=BASE)))
    q, k, v = mx.random.normal((1, 5, 4 * HEAD_DIM)), mx.random.normal((1, 5, 2 * HEAD_DIM)), mx.random.normal((1, 5, 2 * HEAD_DIM))
    later = mx.concatenate([mx.zeros((1, 4, 2 * HEAD_DIM)), mx.ones((1, 1, 2 * HEAD_DIM))], axis=1)
    before, after = np.array(host(q, k, v)), np.array(host(q, k + later, v + later))
    np.testing.assert_array_equal(after[:, :4], before[:, :4])
    assert np.abs(after[:, 4] - before[:, 4]).max() > 1e-3


@pytest.mark.parametrize(
    "rope,why",
    [
        (nn.RoPE(HEAD_DIM, traditional=True, base=BASE), "traditional"),
        (nn.RoPE(HEAD_DIM, base=BASE, scale=0.5), "scaled positions"),
        (nn.RoPE(HEAD_DIM // 2, base=BASE), "partial rotation"),
    ],
)
def test_other_rotary_embeddings_are_not_supported(rope: nn.Module, why: str) -> None:
    assert supports(Attention(4, 2, nn.RoPE(HEAD_DIM, base=BASE)))
    assert not supports(Attention(4, 2, rope)), why


def test_blocks_with_the_same_configuration_share_one_table() -> None:
    class Block(nn.Module):
        def __init__(self, rope):
            super().__init__()
            self.self_attn = Attention(4, 2, rope)

    blocks = [Block(nn.RoPE(HEAD_DIM, base=BASE)), Block(nn.RoPE(HEAD_DIM, base=BASE)), Block(nn.RoPE(HEAD_DIM, traditional=True, base=BASE))]
    found = host_attentions(blocks)
    assert set(found) == {id(blocks[0].self_attn), id(blocks[1].self_attn)}
    assert found[id(blocks[0].self_attn)] is found[id(blocks[1].self_attn)]

