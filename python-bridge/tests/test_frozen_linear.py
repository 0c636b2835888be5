"""The frozen linear kernels (fast/csrc/host_kernels.cpp) against float64 NumPy on both of their
paths, and their custom function's value and input gradient against MLX's own x @ W.T."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from tunelab_bridge.fast import host_kernels
from tunelab_bridge.fast.frozen_linear import FrozenLinear, base_linear

LIB, WHY = host_kernels.load()
pytestmark = pytest.mark.skipif(LIB is None, reason=f"host kernels unavailable: {WHY}")

# (out, in): SmolLM2's shapes, and widths that are not multiples of the 16-column panels, of the
# 48-column register tiles or (for the portable loops only) of 16 at all.
SHAPES = [(576, 576), (192, 576), (1536, 576), (576, 1536), (40, 48), (100, 64), (17, 33)]


def paths(in_features: int) -> list[str]:
    """The paths this machine runs for this width, best first: each SIMD path the CPU has (and the
    width allows), and always the portable loops."""
    if LIB is None:
        return ["portable"]
    return [p for p in host_kernels.PATHS if LIB.tunelab_linear_path(in_features, host_kernels.path_cap(p)).decode() == p]


def cases():
    for out_features, in_features in SHAPES:
        for path in paths(in_features):
            yield pytest.param(out_features, in_features, path, id=f"{out_features}x{in_features}-{path}")


def weight(out_features: int, in_features: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((out_features, in_features)) * 0.05).astype(np.float32)


@pytest.mark.parametrize("out_features,in_features,path", list(cases()))
@pytest.mark.parametrize("rows", [1, 7, 60])
def test_matches_float64_reference(out_features: int, in_features: int, path: str, rows: int) -> None:
    w = weight(out_features, in_features, seed=rows)
    rng = np.random.default_rng(rows + 1)
    x = rng.standard_normal((rows, in_features)).astype(np.float32)
    dy = rng.standard_normal((rows, out_features)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        linear = FrozenLinear(mx.array(w), threads=threads, path=path)
        assert linear.path == path
        # The backward reuses the forward kernel over W^T packed where dy's width takes this path too.
        assert (linear.packed_transposed is not None) == (LIB.tunelab_linear_path(out_features, host_kernels.path_cap(path)).decode() == path)
        results.append((linear.forward(x), linear.backward(dy)))
    y, dx = results[0]
    np.testing.assert_allclose(y, x.astype(np.float64) @ w.astype(np.float64).T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, dy.astype(np.float64) @ w.astype(np.float64), rtol=1e-4, atol=1e-5)
    # Each output element is summed by the same loop whichever thread computes it.
    for other_y, other_dx in results[1:]:
        np.testing.assert_array_equal(other_y, y)
        np.testing.assert_array_equal(other_dx, dx)


@pytest.mark.parametrize("path", paths(64))
@pytest.mark.parametrize("shape", [(2, 7), (3,), (1, 1)])
def test_custom_function_value_and_gradient_match_mlx(path: str, shape: tuple) -> None:
    w = mx.array(weight(40, 64))
    x = mx.random.normal((*shape, 64), key=mx.random.key(1))
    cotangent = mx.random.normal((*shape, 40), key=mx.random.key(2))
    linear = FrozenLinear(w, path=path)
    (ref_y,), (ref_dx,) = mx.vjp(lambda a: a @ w.T, [x], [cotangent])
    (y,), (dx,) = mx.vjp(linear, [x], [cotangent])
    assert y.shape == ref_y.shape and dx.shape == ref_dx.shape
    np.testing.assert_allclose(np.array(y), np.array(ref_y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(dx), np.array(ref_dx), rtol=1e-5, atol=1e-5)


def test_base_linear_sees_through_lora_only() -> None:
    from mlx_lm.tuner.lora import LoRALinear

    plain = nn.Linear(32, 16, bias=False)
    lora = LoRALinear.from_base(plain, r=2)
    assert base_linear(plain) is plain and base_linear(lora) is plain
    assert base_linear(nn.QuantizedLinear(64, 16, bias=False)) is None
