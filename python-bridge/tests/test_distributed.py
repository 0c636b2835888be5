"""Data-parallel %tune on MLX's own runtime: mlx.launch starts two ranks on loopback (ring
backend, real TCP), and the run is the one-process run with the same global batch."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from jobs import make_service
from test_training import losses, tune_params

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") and sys.platform != "darwin", reason="mlx.launch's ring backend runs on Linux and macOS")


def _rank_pids(rank: int) -> list[int]:
    """Processes running `python -m tunelab_bridge.rank` as the given rank (MLX_RANK in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tunelab_bridge.rank" in cmdline and f"MLX_RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_two_processes_train_as_one_with_the_same_global_batch(tiny_model_dir, tmp_path):
    params = dict(iters=8, batch_size=2, lr=1e-2, layers=2, save_every=4, steps_per_report=1)
    one = make_service(tmp_path / "one")
    kind, single = one.run("tune", tune_params(tiny_model_dir, name="single", **params))
    assert kind == "result", single
    two = make_service(tmp_path / "two")
    kind, pair = two.run("tune", tune_params(tiny_model_dir, name="pair", processes=2, eval_prompts=["Who are you?"], eval_max_tokens=4, **params))
    assert kind == "result", pair
    assert pair["processes"] == 2 and pair["backend"] == "ring" and pair["steps"] == 8
    # The same per-step losses (tokens-weighted averages over the ranks' halves of each batch).
    assert losses(two.named("progress")) == pytest.approx(losses(one.named("progress")), rel=1e-4, abs=1e-5)
    assert [p["step"] for p in two.named("progress")] == list(range(1, 9))
    # Rank 0 saved the adapter and checkpoints; the bridge answered the evals and made it active.
    run = tmp_path / "two" / "pair"
    assert (run / "adapters.safetensors").is_file() and (run / "checkpoints").is_dir()
    assert pair["evals"][0]["before"] is not None and pair["evals"][0]["after"] is not None
    assert two.service.adapters.active == "pair"
    # The group resumes from its last checkpoint as a group.
    kind, more = two.run("tune", tune_params(tiny_model_dir, name="pair", processes=2, resume=True, **dict(params, iters=10)))
    assert kind == "result" and more["resumed_from"] == 8 and more["steps"] == 10 and more["processes"] == 2, more


def test_a_killed_rank_is_a_clear_error_and_the_last_checkpoint_is_kept(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")
    killed = []

    def kill_rank_one(job, event, data):
        if event == "checkpoint" and not killed:
            for pid in _rank_pids(1):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    kind, error = bridge.run("tune", tune_params(tiny_model_dir, name="lost", iters=5000, batch_size=2, layers=2, processes=2, save_every=3), on_event=kill_rank_one)
    assert killed, "rank 1 was never found"
    assert kind == "error" and error["code"] == "rank_failed", error
    # Rank 0 may have saved a later checkpoint before the group noticed: the message names the last.
    from tunelab_bridge.runs import RunDir

    saved = RunDir(tmp_path / "runs" / "lost").latest_checkpoint()
    assert saved is not None and saved % 3 == 0, saved
    assert "rank 1 died of SIGKILL" in error["message"] and f"the checkpoint at step {saved} is kept" in error["message"] and "--resume" in error["message"], error
    assert not _rank_pids(0), "rank 0 outlived the group"
    # The checkpoint is whole, and a resumed run, in one process here, goes on from it.
    kind, resumed = bridge.run("tune", tune_params(tiny_model_dir, name="lost", iters=saved + 2, batch_size=2, layers=2, save_every=3, resume=True))
    assert kind == "result" and resumed["resumed_from"] == saved and resumed["steps"] == saved + 2, resumed


def test_an_interrupt_stops_every_rank_at_one_step_and_keeps_the_adapter(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")

    def cancel_at_three(job, event, data):
        if event == "progress" and data["step"] >= 3:
            job.cancel_event.set()

    kind, result = bridge.run("tune", tune_params(tiny_model_dir, name="stopped", iters=5000, batch_size=2, layers=2, processes=2, save_every=0), on_event=cancel_at_three)
    assert kind == "result" and result["status"] == "interrupted", result
    assert 3 <= result["steps"] < 5000
    assert (tmp_path / "runs" / "stopped" / "adapters.safetensors").is_file()
    assert not _rank_pids(0) and not _rank_pids(1)


def test_a_batch_that_does_not_split_is_refused(tiny_model_dir, tmp_path):
    kind, error = make_service(tmp_path / "runs").run("tune", tune_params(tiny_model_dir, name="odd", iters=2, batch_size=3, processes=2))
    assert kind == "error" and error["code"] == "bad_config" and "--batch-size 3 does not split over 2 processes" in error["message"], error


def test_the_sync_cost_of_lora_and_full_gradients_is_measured_over_the_ring(tiny_model_dir, tmp_path):
    kind, result = make_service(tmp_path / "runs").run("bench.sync_cost", {"model": str(tiny_model_dir), "processes": 2, "layers": 2, "rank": 4, "reps": 2})
    assert kind == "result", result
    lora, full = result["lora"], result["full"]
    assert result["ranks"] == 2
    assert 0 < lora["parameters"] < full["parameters"] and lora["bytes"] == 4 * lora["parameters"]
    assert lora["seconds"] > 0 and full["seconds"] > 0 and full["gbps"] > 0
    assert result["claim"]["home_gbps"] == 0.026
