"""The bridge's `tune` with and without the fast path: same losses and adapter weights, and the
optimisations that are not exact are off with a reason in the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jobs import make_service
from test_training import losses, tune_params


def adapter_weights(result) -> dict[str, np.ndarray]:
    import mlx.core as mx

    return {k: np.array(v) for k, v in mx.load(str(Path(result["run_dir"]) / "adapters.safetensors")).items()}


@pytest.mark.parametrize("batch_size, mask_prompt", [(1, True), (2, False)])
def test_prefix_cache_on_and_off_train_the_same_adapter(tiny_model_dir, tmp_path, batch_size, mask_prompt):
    bridge = make_service(tmp_path / "runs")
    runs = {}
    for cache in (True, False):
        bridge.events.clear()
        kind, result = bridge.run("tune", tune_params(
            tiny_model_dir, name=f"cache-{cache}", iters=24, layers=2, lr=5e-3, save_every=0,
            batch_size=batch_size, mask_prompt=mask_prompt, prefix_cache=cache,
        ))
        assert kind == "result", result
        runs[cache] = (losses(bridge.named("progress")), adapter_weights(result), result["optimisations"], bridge.named("phase"))

    on, off = runs[True], runs[False]
    assert len(on[0]) == 24
    assert on[0] == pytest.approx(off[0], rel=1e-4, abs=1e-5)
    assert on[0][-1] < on[0][0]
    assert on[1].keys() == off[1].keys() and on[1]
    for key in on[1]:
        np.testing.assert_allclose(on[1][key], off[1][key], rtol=1e-3, atol=1e-5, err_msg=key)

    cached = on[2]["prefix_cache"]
    assert cached["used"] is True and cached["reason"] is None
    assert cached["frozen_blocks"] == 2 and cached["cached_rows"] == 3 and cached["bytes"] > 0
    assert any("caching frozen blocks 3/3" in (p.get("detail") or "") for p in on[3])
    assert off[2]["prefix_cache"]["used"] is False and "--no-prefix-cache" in off[2]["prefix_cache"]["reason"]
    for name in ("loss_head", "trim_padding"):
        assert on[2][name]["used"] is True, on[2]
    # mx.compile is opt-in (FastOptions.compile): the uncompiled step measured faster on CPU.
    assert on[2]["compile"]["used"] is False and "not by default" in on[2]["compile"]["reason"], on[2]


def test_layers_covering_every_block_turn_the_cache_off_with_a_reason(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")
    kind, result = bridge.run("tune", tune_params(tiny_model_dir, iters=3, layers=4, save_every=0))
    assert kind == "result", result
    cache = result["optimisations"]["prefix_cache"]
    assert cache["used"] is False and "first block" in cache["reason"] and cache["cached_rows"] == 0


def test_dropout_turns_off_what_it_would_make_inexact(tiny_model_dir, tmp_path):
    # LoRA dropout sits in the adapted blocks only: the frozen blocks below stay exact, but
    # tracing the step or changing the padded shape would change the random draws.
    bridge = make_service(tmp_path / "runs")
    runs = {}
    for cache in (True, False):
        bridge.events.clear()
        kind, result = bridge.run("tune", tune_params(tiny_model_dir, name=f"d-{cache}", iters=20, layers=2, dropout=0.1, save_every=0, prefix_cache=cache))
        assert kind == "result", result
        runs[cache] = (losses(bridge.named("progress")), adapter_weights(result), result["optimisations"])
    opts = runs[True][2]
    assert opts["prefix_cache"]["used"] is True
    for name in ("compile", "trim_padding"):
        assert opts[name]["used"] is False and "dropout" in opts[name]["reason"], opts
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4, abs=1e-5)
    for key in runs[True][1]:
        np.testing.assert_allclose(runs[True][1][key], runs[False][1][key], rtol=1e-3, atol=1e-5, err_msg=key)


def test_resume_with_the_cache_replays_the_same_losses(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")
    kind, whole = bridge.run("tune", tune_params(tiny_model_dir, name="whole", iters=10, save_every=5))
    assert kind == "result", whole and whole["optimisations"]["prefix_cache"]["used"]
    straight = losses(bridge.named("progress"))
    bridge.events.clear()
    assert bridge.run("tune", tune_params(tiny_model_dir, name="halves", iters=5, save_every=5))[0] == "result"
    kind, second = bridge.run("tune", tune_params(tiny_model_dir, name="halves", iters=10, save_every=5, resume=True))
    assert kind == "result", second
    assert losses(bridge.named("progress")) == pytest.approx(straight, rel=1e-4, abs=1e-5)
