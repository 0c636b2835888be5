"""The bridge as the kernel meets it: a child process on a real ZeroMQ ipc/tcp endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bridge_process import BridgeProcess, Client
from test_training import FACTS


@pytest.fixture()
def bridge(tiny_model_dir, tmp_path):
    process = BridgeProcess(
        ["--listen", f"ipc://{tmp_path}/sock/bridge", "--runs-dir", str(tmp_path / "runs")],
        env={"TUNELAB_BRIDGE_DEFAULT_MODEL": str(tiny_model_dir)},
    )
    endpoint = process.wait_ready()
    client = Client(endpoint)
    yield process, client
    client.close()
    process.stop()


def tune_params(**overrides):
    params = {
        "model": None, "name": "facts",
        "data": {"train": {"source": "data/facts.jsonl", "text": FACTS}, "valid": None},
        "iters": 20, "batch_size": 1, "lr": 1e-2, "layers": 2, "save_every": 10,
        "eval_prompts": ["Who are you?"], "eval_max_tokens": 6,
    }
    params.update(overrides)
    return params


def test_ping_status_and_bad_requests(bridge):
    process, client = bridge
    pong = client.call("ping")
    assert pong["type"] == "result" and pong["data"]["pong"] is True
    status = client.call("status")["data"]
    assert status["protocol"] == 1 and status["model"] is None and status["job"] is None
    assert status["mlx"] and status["device"] and status["pid"] == process.process.pid

    unknown = client.call("teleport")
    assert unknown["type"] == "error" and unknown["error"]["code"] == "bad_request" and "teleport" in unknown["error"]["message"]
    client.socket.send(json.dumps({"v": 99, "id": "old", "method": "ping", "params": {}}).encode())
    old, _ = client.collect("old", 30)
    assert old["error"]["code"] == "bad_request" and "version" in old["error"]["message"]
    client.socket.send(b"{not json")
    garbled = client.receive(30)
    assert garbled is not None and garbled["type"] == "error" and garbled["error"]["code"] == "bad_request"
    missing = client.call("describe_model")
    assert missing["type"] == "error" and missing["error"]["code"] == "model_not_found"


def test_tune_streams_events_while_cheap_methods_answer(bridge):
    _, client = bridge
    tune_id = client.send("tune", tune_params())
    seen_job = []

    def during(event):
        if event["event"] == "progress" and not seen_job:
            # The socket thread answers while the worker trains.
            ping_id = client.send("ping")
            status_id = client.send("status")
            seen_job.append(status_id)
            seen_job.append(ping_id)

    final, events = client.collect(tune_id, on_event=during)
    assert final["type"] == "result", final
    result = final["data"]
    assert result["status"] == "completed" and result["steps"] == 20
    names = [e["event"] for e in events]
    assert names.count("progress") == 20 and "checkpoint" in names
    phases = [e["data"]["name"] for e in events if e["event"] == "phase"]
    for phase in ("loading", "preparing", "eval-before", "training", "saving", "eval-after"):
        assert phase in phases
    answers = {m["id"]: m for m in client.inbox}
    assert answers[seen_job[0]]["data"]["job"] == tune_id
    assert answers[seen_job[1]]["data"]["pong"] is True

    generated, tokens = client.collect(client.send("generate", {"prompt": "Who are you?", "max_tokens": 8}))
    assert generated["type"] == "result" and generated["data"]["adapter"] == "facts"
    assert "".join(t["data"]["text"] for t in tokens if t["event"] == "token") == generated["data"]["text"]

    switched = client.call("adapters.switch", {"name": "none"})
    assert switched["data"]["active"] is None and switched["data"]["ms"] < 1000
    listing = client.call("adapters.list")["data"]
    assert [r["name"] for r in listing["runs"]] == ["facts"] and listing["runs"][0]["status"] == "completed"
    assert listing["loaded"] == ["facts"] and listing["active"] is None
    assert client.call("status")["data"]["model"]["num_layers"] == 4


def test_cancel_interrupts_training_and_keeps_the_run(bridge, tmp_path):
    _, client = bridge
    tune_id = client.send("tune", tune_params(name="long", iters=5000, eval_prompts=[]))
    cancelled = []

    def cancel_on_third(event):
        if event["event"] == "progress" and event["data"]["step"] == 3 and not cancelled:
            cancelled.append(client.send("cancel", {"id": tune_id}))

    final, _ = client.collect(tune_id, on_event=cancel_on_third)
    assert final["type"] == "result" and final["data"]["status"] == "interrupted"
    assert 3 <= final["data"]["steps"] < 5000
    answers = {m["id"]: m for m in client.inbox}
    assert answers[cancelled[0]]["data"] == {"cancelled": True}
    assert (tmp_path / "runs" / "long" / "adapters.safetensors").exists()
    assert client.call("cancel", {"id": tune_id})["data"] == {"cancelled": False}


def test_queued_job_cancelled_before_it_starts(bridge):
    _, client = bridge
    tune_id = client.send("tune", tune_params(name="first", iters=5000, eval_prompts=[]))
    queued_id = client.send("generate", {"prompt": "Who are you?", "max_tokens": 5})
    progress = []

    def cancel_both(event):
        if event["event"] == "progress" and not progress:
            progress.append(event)
            client.send("cancel", {"id": queued_id})
            client.send("cancel", {"id": tune_id})

    final, _ = client.collect(tune_id, on_event=cancel_both)
    assert final["data"]["status"] == "interrupted"
    queued, events = client.collect(queued_id)
    assert queued["type"] == "error" and queued["error"]["code"] == "cancelled" and events == []
    assert client.call("status")["data"]["job"] is None


def test_shutdown_exits(bridge):
    process, client = bridge
    assert client.call("shutdown")["data"] == {}
    assert process.process.wait(30) == 0


def test_exits_when_parent_dies(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    process = BridgeProcess(["--listen", f"ipc://{tmp_path}/b", "--runs-dir", str(tmp_path / "runs"), "--parent-pid", str(parent.pid)])
    try:
        process.wait_ready()
        parent.kill()
        parent.wait()
        assert process.process.wait(30) == 0
    finally:
        parent.kill()
        process.stop()


def test_refuses_public_tcp_without_curve(tmp_path):
    process = BridgeProcess(["--listen", "tcp://0.0.0.0:0", "--runs-dir", str(tmp_path / "runs")])
    assert process.process.wait(60) == 2
    assert "CURVE" in process.stderr_text()


def test_curve_admits_only_listed_clients(tmp_path):
    from tunelab_bridge.curve import create_keys, secure_client_socket

    _, server_secret = create_keys(tmp_path / "server", "server")
    create_keys(tmp_path / "client", "client")
    create_keys(tmp_path / "stranger", "stranger")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "client.key").write_bytes((tmp_path / "client" / "client.key").read_bytes())

    process = BridgeProcess([
        "--listen", "tcp://127.0.0.1:0", "--runs-dir", str(tmp_path / "runs"),
        "--curve-secret-key", str(server_secret), "--curve-clients", str(allowed),
    ])
    try:
        endpoint = process.wait_ready()
        server_public = tmp_path / "server" / "server.key"
        stranger = Client(endpoint, lambda s: secure_client_socket(s, tmp_path / "stranger" / "stranger.key_secret", server_public))
        friend = Client(endpoint, lambda s: secure_client_socket(s, tmp_path / "client" / "client.key_secret", server_public))
        plain = Client(endpoint)
        stranger.send("ping")
        plain.send("ping")
        assert friend.call("ping", timeout=60)["data"]["pong"] is True
        assert stranger.receive(3.0) is None
        assert plain.receive(1.0) is None
        for c in (stranger, friend, plain):
            c.close()
    finally:
        process.stop()
