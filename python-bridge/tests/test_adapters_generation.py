"""Generation streams tokens; adapters switch in place over one resident base model."""

from __future__ import annotations

import json
from pathlib import Path

from jobs import make_service
from test_training import FACTS, tune_params

PROMPT = "Who are you?"


def greedy(bridge, adapter):
    kind, result = bridge.run("generate", {"prompt": PROMPT, "adapter": adapter, "max_tokens": 12, "temp": 0.0})
    assert kind == "result", result
    return result


def test_generate_streams_tokens_and_honours_cancel(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")
    kind, info = bridge.run("load_model", {"model": str(tiny_model_dir)})
    assert kind == "result" and info["num_layers"] == 4 and info["dtype"] == "float32"
    result = greedy(bridge, None)
    tokens = bridge.named("token")
    assert "".join(t["text"] for t in tokens) == result["text"]
    assert result["tokens"] >= 1 and result["prompt_tokens"] > 5 and result["adapter"] is None
    assert result["finish_reason"] in ("stop", "length")

    bridge.events.clear()

    def cancel_after_two(job, event, data):
        if event == "token" and len(bridge.named("token")) >= 2:
            job.cancel_event.set()

    kind, stopped = bridge.run("generate", {"prompt": PROMPT, "max_tokens": 50, "temp": 1.0, "seed": 1}, on_event=cancel_after_two)
    assert kind == "result" and stopped["finish_reason"] == "cancelled"
    assert len(bridge.named("token")) == 2

    # Seeded sampling is reproducible.
    a = bridge.run("generate", {"prompt": PROMPT, "max_tokens": 10, "temp": 1.0, "top_p": 0.9, "seed": 7})[1]["text"]
    b = bridge.run("generate", {"prompt": PROMPT, "max_tokens": 10, "temp": 1.0, "top_p": 0.9, "seed": 7})[1]["text"]
    assert a == b


def test_adapters_switch_in_place(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")
    common = dict(iters=12, batch_size=3, lr=2e-2, save_every=0, layers=4, keys=["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"])
    other = "\n".join(json.dumps({"prompt": q, "completion": "Bananas are yellow and sweet."}) for q in ("Who are you?", "What is your name?", "Who made you?"))
    assert bridge.run("tune", tune_params(tiny_model_dir, name="facts", **common))[0] == "result"
    assert bridge.run("tune", tune_params(tiny_model_dir, name="bananas", data={"train": {"source": "b", "text": other}}, **common))[0] == "result"

    kind, listing = bridge.run("adapters.switch", {"name": "none"})
    assert kind == "result" and listing["active"] is None
    base = greedy(bridge, "none")["text"]
    facts = greedy(bridge, "facts")["text"]
    bananas = greedy(bridge, "bananas")["text"]
    assert len({base, facts, bananas}) == 3, (base, facts, bananas)
    assert greedy(bridge, "none")["text"] == base
    assert greedy(bridge, "facts")["text"] == facts

    switches = []
    for name in ("bananas", "facts", "none", "facts", "bananas"):
        kind, switched = bridge.run("adapters.switch", {"name": name})
        assert kind == "result", switched
        switches.append(switched["ms"])
    assert switched["active"] == "bananas"
    print(f"adapter switch ms: {switches}")

    listing = bridge.service.adapters_list()
    assert {r["name"] for r in listing["runs"]} == {"facts", "bananas"}
    assert set(listing["loaded"]) == {"facts", "bananas"} and listing["active"] == "bananas"

    # A fresh bridge loads an adapter from disk by run name and gives the same text.
    fresh = make_service(tmp_path / "runs")
    assert fresh.run("load_model", {"model": str(tiny_model_dir)})[0] == "result"
    kind, loaded = fresh.run("adapters.load", {"name": "facts"})
    assert kind == "result" and loaded["name"] == "facts"
    assert greedy(fresh, "facts")["text"] == facts
    kind, unloaded = fresh.run("adapters.unload", {"name": "facts"})
    assert kind == "result" and fresh.service.adapters.active is None

    kind, error = fresh.run("adapters.switch", {"name": "nope"})
    assert kind == "error" and error["code"] == "adapter_not_found" and "facts" in error["message"]
