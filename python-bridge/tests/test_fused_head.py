"""The fused head kernel (fast/csrc/host_kernels.cpp) against a float64 reference, on both of
its paths, and its custom function's gradient against MLX's own cross-entropy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from tunelab_bridge.fast import host_kernels
from tunelab_bridge.fast.fused_head import FusedHead

LIB, WHY = host_kernels.load()
pytestmark = pytest.mark.skipif(LIB is None, reason=f"host kernels unavailable: {WHY}")


def paths() -> list[str]:
    """The kernel paths this machine can run, best first: each SIMD path the CPU has (AVX-512,
    AVX2), and always the portable loops."""
    if LIB is None:
        return ["portable"]
    return [p for p in host_kernels.PATHS if LIB.tunelab_fused_cross_entropy_path(64, host_kernels.path_cap(p)).decode() == p]


def reference(x: np.ndarray, w: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ce and d ce / d x in float64, from the logits."""
    logits = x.astype(np.float64) @ w.astype(np.float64).T
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    total = probs.sum(axis=1, keepdims=True)
    rows = np.arange(len(targets))
    ce = np.log(total[:, 0]) - shifted[rows, targets]
    probs /= total
    probs[rows, targets] -= 1.0
    return ce, probs @ w.astype(np.float64)


def problem(n: int, d: int, v: int, seed: int = 0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((v, d)) * 0.1).astype(np.float32)
    x = (rng.standard_normal((n, d)) * scale).astype(np.float32)
    targets = rng.integers(0, v, size=n).astype(np.int32)
    # The vocabulary's first and last rows are where chunk and panel edges are.
    targets[0] = 0
    targets[-1] = v - 1
    return x, w, targets


def head(w: np.ndarray, path: str, threads: int = 2, chunk: int = 0) -> FusedHead:
    h = FusedHead(mx.array(w), threads=threads, path=path, chunk=chunk)
    assert h.path == path
    return h


@pytest.mark.parametrize("path", paths())
@pytest.mark.parametrize("d", [64, 576])
@pytest.mark.parametrize("n", [1, 7, 32, 45])
def test_matches_float64_reference(path: str, d: int, n: int) -> None:
    # 1003 rows: not a multiple of the 16-row panels, of the 192-row chunks, or of the shares.
    x, w, targets = problem(n, d, 1003, seed=n + d)
    ce, grad = head(w, path).compute(x, targets, with_gradient=True)
    ref_ce, ref_grad = reference(x, w, targets)
    np.testing.assert_allclose(ce, ref_ce, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6 * np.abs(ref_grad).max())


@pytest.mark.parametrize("path", paths())
@pytest.mark.parametrize("chunk", [16, 48, 0])
def test_many_chunks_per_share(path: str, chunk: int) -> None:
    """Several chunks per share exercise the running max's rescaling of sum and gradient."""
    x, w, targets = problem(32, 64, 5003, seed=chunk)
    # Row-dependent scales make the max grow part-way through the vocabulary for some rows.
    x *= np.linspace(0.5, 8.0, 32, dtype=np.float32)[:, None]
    ce, grad = head(w, path, chunk=chunk).compute(x, targets, with_gradient=True)
    ref_ce, ref_grad = reference(x, w, targets)
    np.testing.assert_allclose(ce, ref_ce, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6 * np.abs(ref_grad).max())


@pytest.mark.parametrize("path", paths())
def test_large_logits_do_not_overflow(path: str) -> None:
    # Logits in the thousands: exp would overflow float32 without the running max.
    x, w, targets = problem(7, 64, 1003, scale=400.0)
    ce, grad = head(w, path).compute(x, targets, with_gradient=True)
    ref_ce, ref_grad = reference(x, w, targets)
    logit_scale = np.abs(x.astype(np.float64) @ w.T.astype(np.float64)).max()
    assert logit_scale > 1000
    assert np.isfinite(ce).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(ce, ref_ce, rtol=1e-5, atol=1e-6 * logit_scale)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", paths())
def test_any_number_of_threads_gives_the_same_bits(path: str) -> None:
    x, w, targets = problem(45, 576, 4099)
    ce1, grad1 = head(w, path, threads=1).compute(x, targets, with_gradient=True)
    for threads in (2, 3, 8):
        ce, grad = head(w, path, threads=threads).compute(x, targets, with_gradient=True)
        assert np.array_equal(ce, ce1) and np.array_equal(grad, grad1), threads


@pytest.mark.parametrize("path", paths())
def test_loss_without_gradient_has_the_same_values(path: str) -> None:
    x, w, targets = problem(32, 64, 1003)
    h = head(w, path)
    ce, grad = h.compute(x, targets, with_gradient=False)
    assert grad is None
    np.testing.assert_array_equal(ce, h.compute(x, targets, with_gradient=True)[0])


@pytest.mark.parametrize("path", [p for p in paths() if p != "portable"])
def test_paths_agree_with_each_other(path: str) -> None:
    x, w, targets = problem(32, 576, 2000)
    fast_ce, fast_grad = head(w, path).compute(x, targets, with_gradient=True)
    portable_ce, portable_grad = head(w, "portable").compute(x, targets, with_gradient=True)
    np.testing.assert_allclose(fast_ce, portable_ce, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast_grad, portable_grad, rtol=1e-4, atol=1e-6 * np.abs(portable_grad).max())


def test_non_finite_rows_and_bad_targets_are_reported() -> None:
    x, w, targets = problem(7, 64, 1003)
    x[3, 5] = np.nan
    ce, grad = head(w, paths()[0]).compute(x, targets, with_gradient=True)
    assert np.isnan(ce[3]) and np.isnan(grad[3]).all()
    assert np.isfinite(np.delete(ce, 3)).all()
    targets[2] = 1003
    with pytest.raises(ValueError, match="outside the vocabulary"):
        head(w, paths()[0]).compute(np.nan_to_num(x), targets, with_gradient=True)


def test_environment_variable_caps_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in paths():
        monkeypatch.setenv(host_kernels.PATH_ENV, path)
        assert FusedHead(mx.zeros((40, 64))).path == path
    monkeypatch.setenv(host_kernels.PATH_ENV, "")
    assert FusedHead(mx.zeros((40, 64))).path == paths()[0]
    monkeypatch.setenv(host_kernels.PATH_ENV, "sse9")
    with pytest.raises(ValueError, match="TUNELAB_HOST_KERNELS_PATH must be one of avx512, avx2, portable"):
        FusedHead(mx.zeros((40, 64)))


@pytest.mark.parametrize("path", paths())
def test_gradient_matches_mlx_cross_entropy(path: str) -> None:
    x, w, targets = problem(23, 64, 1003, seed=5)
    weights = mx.array((np.arange(23) % 3 != 0).astype(np.float32))  # some rows do not count
    ntoks = weights.sum()
    h = head(w, path)
    W, t = mx.array(w), mx.array(targets)

    def mlx_loss(rows: mx.array) -> mx.array:
        return (nn.losses.cross_entropy(rows @ W.T, t) * weights).sum() / ntoks

    def fused_loss(rows: mx.array) -> mx.array:
        return (h.cross_entropy(rows, t) * weights).sum() / ntoks

    ref_value, ref_grad = mx.value_and_grad(mlx_loss)(mx.array(x))
    value, grad = mx.value_and_grad(fused_loss)(mx.array(x))
    assert abs(value.item() - ref_value.item()) < 1e-5 * max(1.0, abs(ref_value.item()))
    np.testing.assert_allclose(np.array(grad), np.array(ref_grad), rtol=1e-4, atol=1e-7)
    assert float(mx.abs(grad).sum()) > 0


def test_validation_values_match_the_differentiable_ones() -> None:
    x, w, targets = problem(9, 64, 1003)
    h = head(w, paths()[0])
    rows, t = mx.array(x), mx.array(targets)
    np.testing.assert_array_equal(np.array(h.cross_entropy_values(rows, t)), np.array(h.cross_entropy(rows, t)))


def test_build_names_the_library_by_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "host_kernels.cpp"
    source.write_text(host_kernels.SOURCE.read_text())
    monkeypatch.setattr(host_kernels, "SOURCE", source)
    first = host_kernels.library_path()
    source.write_text(source.read_text() + "\n// edited\n")
    assert host_kernels.library_path() != first
    assert host_kernels.library_path().parent == tmp_path / "cache" / "host-kernels"


def test_build_failures_say_why_and_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "host_kernels.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(host_kernels, "SOURCE", broken)
    with pytest.raises(host_kernels.BuildError, match=r"failed .*install g\+\+ and run npm run setup"):
        host_kernels.build()
    assert not any((tmp_path / "cache" / "host-kernels").iterdir())  # no half-written library left
    monkeypatch.setattr(host_kernels, "COMPILER", "g++-that-is-not-installed")
    with pytest.raises(host_kernels.BuildError, match=r"g\+\+-that-is-not-installed not found; install g\+\+"):
        host_kernels.build()


def test_command_line_build_prints_the_library_and_checks_each_path_on_this_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "TUNELAB_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "tunelab_bridge.fast"]
    assert subprocess.run([*command, "--ready"], env=env).returncode == 1
    result = subprocess.run([*command, "--build"], capture_output=True, text=True, env=env, check=True)
    first, *paths = result.stdout.strip().splitlines()
    built = Path(first)
    assert built.is_file() and built.parent == tmp_path / "host-kernels"
    # Every path this CPU offers ran in a child and matched NumPy; portable runs everywhere.
    assert "  portable: passed" in paths and all(line.endswith(": passed") for line in paths), paths
    assert "RuntimeWarning" not in result.stderr
    assert subprocess.run([*command, "--ready"], env=env).returncode == 0


def test_training_on_the_portable_loops_matches_mlx_lm(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_fast_equivalence import assert_same_training, run_pair
    from tunelab_bridge import fast

    monkeypatch.setenv(host_kernels.PATH_ENV, "portable")
    reference, candidate, plan, _ = run_pair(layers=2, batch_size=2, options=fast.FastOptions())
    assert plan.fused_head.applies and "portable" in plan.fused_head.reason
    assert_same_training(reference, candidate)


@pytest.mark.skipif("avx2" not in paths(), reason="this CPU has no AVX2")
def test_training_on_the_avx2_kernels_matches_mlx_lm(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a CPU without AVX-512 runs: the head and projections on the AVX2 tiles, in the host step.
    from test_fast_equivalence import assert_same_training, run_pair
    from tunelab_bridge import fast

    monkeypatch.setenv(host_kernels.PATH_ENV, "avx2")
    reference, candidate, plan, _ = run_pair(layers=2, batch_size=2, options=fast.FastOptions())
    assert "AVX2" in plan.fused_head.reason and "AVX2" in plan.native_linears.reason and plan.host_step.applies
    assert_same_training(reference, candidate)


def test_an_unknown_path_in_the_environment_turns_the_kernels_off_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_reference import prepare
    from tunelab_bridge import fast

    monkeypatch.setenv(host_kernels.PATH_ENV, "sse9")
    plan = fast.plan(prepare(6, 2))
    assert not plan.fused_head.applies and "TUNELAB_HOST_KERNELS_PATH must be one of" in plan.fused_head.reason
    assert not plan.native_linears.applies and not plan.host_step.applies
