"""`bench.conv_stack`: MLX runs the ANE peak benchmark's conv stacks, checked before it is timed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge_process import BridgeProcess, Client
from jobs import make_service
from tunelab_bridge import conv_bench

SMALL = {"configs": [{"channels": 64, "spatial": 16, "depth": 2}, {"channels": 48, "spatial": 8, "depth": 5}], "warmup": 1, "iters": 3, "seed": 3}
ROW_FIELDS = {"backend", "device", "channels", "spatial", "depth", "weight_mb", "gflop", "ms_median", "ms_p10", "ms_p90", "tflops", "max_rel_error", "compiled"}


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    return make_service(tmp_path_factory.mktemp("runs"))


def assert_sane_row(row, config):
    assert ROW_FIELDS <= set(row), row
    assert row["backend"] == "mlx" and row["device"]
    assert (row["channels"], row["spatial"], row["depth"]) == (config["channels"], config["spatial"], config["depth"])
    assert row["gflop"] == pytest.approx(2 * config["channels"] ** 2 * config["spatial"] * config["depth"] / 1e9)
    assert row["weight_mb"] == pytest.approx(4 * config["channels"] ** 2 * config["depth"] / 2**20)
    assert 0 < row["ms_p10"] <= row["ms_median"] <= row["ms_p90"]
    assert row["tflops"] == pytest.approx(row["gflop"] / row["ms_median"])
    assert 0 <= row["max_rel_error"] < 1e-4
    assert isinstance(row["compiled"], bool)


def test_rows_are_checked_timed_and_streamed(recorder):
    recorder.events.clear()
    kind, result = recorder.run("bench.conv_stack", SMALL)
    assert kind == "result", result
    events = recorder.named("row")
    assert [e["index"] for e in events] == [0, 1]
    assert len(result["rows"]) == 2
    for row, event, config in zip(result["rows"], events, SMALL["configs"]):
        assert_sane_row(row, config)
        assert {k: event[k] for k in row} == row
    peak = result["peak"]
    assert peak["tflops"] > 0 and math.isfinite(peak["tflops"]) and "2048" in peak["how"]


def test_same_seed_builds_the_same_stack():
    config = conv_bench.StackConfig(32, 4, 3)
    a, b = conv_bench.random_stack(config, 5), conv_bench.random_stack(config, 5)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0])) and np.array_equal(a[1], b[1])
    # Variance 1/C keeps the activations' scale through the stack.
    y = conv_bench.reference(a[0], a[1], np.arange(4))
    assert 0.2 < np.std(y) / np.std(a[1]) < 5


def test_a_wrong_output_is_an_error_not_a_timing(recorder, monkeypatch):
    real = conv_bench.reference
    monkeypatch.setattr(conv_bench, "reference", lambda w, x, cols: real(w, x, cols) * (1 + 1e-3))
    recorder.events.clear()
    kind, error = recorder.run("bench.conv_stack", SMALL)
    assert kind == "error" and error["code"] == "internal"
    assert "float64 reference" in error["message"] and "2x conv 64ch sp16" in error["message"]
    assert recorder.named("row") == []


def test_cancel_stops_between_configs(recorder):
    def cancel_after_first_row(job, event, data):
        if event == "row":
            job.cancel_event.set()

    recorder.events.clear()
    kind, error = recorder.run("bench.conv_stack", SMALL, on_event=cancel_after_first_row)
    assert kind == "error" and error["code"] == "cancelled", error
    assert "after 1 of 2 configs" in error["message"]
    assert len(recorder.named("row")) == 1


@pytest.mark.parametrize(
    "params, code, words",
    [
        ({"configs": []}, "bad_request", "'configs'"),
        ({"configs": [{"channels": 8, "spatial": 4}]}, "bad_request", "depth"),
        ({"configs": [{"channels": 0, "spatial": 4, "depth": 1}]}, "bad_request", "channels"),
        ({"configs": [{"channels": 9000, "spatial": 4, "depth": 1}]}, "bad_config", "at most 8192"),
        ({"configs": [{"channels": 8192, "spatial": 4, "depth": 4096}]}, "bad_config", "GiB"),
        ({**SMALL, "iters": 0}, "bad_request", "iters"),
    ],
)
def test_bad_params_name_the_field(recorder, params, code, words):
    kind, error = recorder.run("bench.conv_stack", params)
    assert kind == "error" and error["code"] == code and words in error["message"], error


def test_over_zeromq_with_cheap_methods_answering(tmp_path):
    process = BridgeProcess(["--listen", f"ipc://{tmp_path}/sock/bridge", "--runs-dir", str(tmp_path / "runs")])
    client = None
    try:
        client = Client(process.wait_ready())
        params = {**SMALL, "configs": SMALL["configs"][:1]}
        request = client.send("bench.conv_stack", params)
        status = client.call("status", timeout=60)
        assert status["type"] == "result"
        final, events = client.collect(request, timeout=300)
        assert final["type"] == "result", final
        assert [e["event"] for e in events] == ["row"]
        assert_sane_row(final["data"]["rows"][0], params["configs"][0])
        assert final["data"]["peak"]["tflops"] > 0
    finally:
        if client is not None:
            client.close()
        process.stop()
