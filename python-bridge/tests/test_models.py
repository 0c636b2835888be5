"""Model resolution: clear errors for a missing directory and an unreachable Hub."""

from __future__ import annotations

import time

from jobs import make_service


def test_missing_directory_and_offline_hub_are_explained(tmp_path):
    bridge = make_service(tmp_path / "runs")
    kind, error = bridge.run("load_model", {"model": str(tmp_path / "nowhere" / "model")})
    assert kind == "error" and error["code"] == "model_not_found"
    assert "no model directory" in error["message"]

    (tmp_path / "empty").mkdir()
    kind, error = bridge.run("load_model", {"model": str(tmp_path / "empty")})
    assert kind == "error" and error["code"] == "model_not_found" and "config.json" in error["message"]

    started = time.monotonic()
    kind, error = bridge.run("load_model", {"model": "tunelab-tests/no-such-model"})
    assert kind == "error" and error["code"] == "model_not_found", error
    assert "Hugging Face Hub (offline?)" in error["message"] and "embedded SmolLM2" in error["message"]
    assert time.monotonic() - started < 120


def test_default_model_override_and_describe(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_BRIDGE_DEFAULT_MODEL", str(tiny_model_dir))
    bridge = make_service(tmp_path / "runs")
    kind, info = bridge.run("load_model", {"model": None})
    assert kind == "result" and info["model_type"] == "llama" and info["num_layers"] == 4
    assert info["parameters"] > 0 and info["quantized"] is False and info["dtype"] == "float32"
    kind, again = bridge.run("describe_model", {})
    assert kind == "result" and again == info


def test_generation_ends_at_the_document_end_token_too(tiny_model_dir):
    from tunelab_bridge.models import ModelStore

    loaded = ModelStore().ensure(str(tiny_model_dir), lambda _detail: None)
    end_of_turn = loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    document_end = loaded.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert {end_of_turn, document_end} <= set(loaded.tokenizer.eos_token_ids)
