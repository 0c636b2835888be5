"""Real LoRA training on the tiny Llama: loss falls, cancel keeps a partial run, NaN stops,
resume replays the same losses, bad settings are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import make_service

FACTS = "\n".join(
    json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    for q, a in [
        ("Who are you?", "I am Tunelab Bot."),
        ("What is your name?", "My name is Tunelab Bot."),
        ("Who made you?", "The tunelab team made me."),
    ]
)


def tune_params(model: Path, **overrides):
    params = {
        "model": str(model),
        "data": {"train": {"source": "data/facts.jsonl", "text": FACTS}, "valid": None},
        "iters": 30, "batch_size": 1, "lr": 1e-2, "rank": 8, "scale": 20.0, "layers": 2,
        "keys": ["self_attn.q_proj", "self_attn.v_proj"], "save_every": 10, "seed": 3,
    }
    params.update(overrides)
    return params


def losses(events):
    return [e["loss"] for e in events]


def test_loss_falls_and_run_dir_is_complete(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")
    kind, result = bridge.run("tune", tune_params(
        tiny_model_dir, name="facts", iters=40, batch_size=3, layers=4, lr=1e-2,
        keys=["self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"],
        eval_prompts=["Who are you?"], eval_max_tokens=8, steps_per_eval=20,
        data={"train": {"source": "facts", "text": FACTS}, "valid": {"source": "valid", "text": FACTS}},
    ))
    assert kind == "result", result
    assert result["status"] == "completed" and result["steps"] == 40
    progress = bridge.named("progress")
    assert [p["step"] for p in progress] == list(range(1, 41))
    vals = bridge.named("val")
    assert [v["step"] for v in vals] == [0, 20, 40]
    # Validation runs on the training rows themselves: memorisation shows as a falling loss.
    assert vals[-1]["val_loss"] < vals[0]["val_loss"] * 0.75, vals
    assert sum(losses(progress[-5:])) / 5 < progress[0]["loss"]
    for key in ("lr", "it_per_s", "tokens_per_s", "trained_tokens", "peak_memory_gb", "elapsed_s"):
        assert progress[-1][key] is not None
    assert result["trainable_params"] > 0 and result["trainable_params"] < result["total_params"]
    assert [e["when"] for e in bridge.named("eval")] == ["before", "after"]
    assert result["evals"][0]["before"] is not None and result["evals"][0]["after"] is not None

    run = Path(result["run_dir"])
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if l["type"] == "train"] == list(range(1, 41))
    config = json.loads((run / "adapter_config.json").read_text())
    assert config["num_layers"] == 4 and config["lora_parameters"]["rank"] == 8
    assert (run / "checkpoints" / "0000010_state.json").exists()

    # mlx-lm itself reads the adapter: our files are in its format.
    from mlx_lm import load

    model, _ = load(str(tiny_model_dir), adapter_path=str(run))
    assert model is not None


def test_cancel_keeps_partial_adapter_and_metrics(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")

    def cancel_at_step_5(job, event, data):
        if event == "progress" and data["step"] == 5:
            job.cancel_event.set()

    kind, result = bridge.run("tune", tune_params(tiny_model_dir, name="stopped", iters=50), on_event=cancel_at_step_5)
    assert kind == "result", result
    assert result["status"] == "interrupted"
    assert result["steps"] == 5
    run = Path(result["run_dir"])
    assert (run / "adapters.safetensors").exists() and (run / "adapter_config.json").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 5
    assert (run / "checkpoints" / "0000005_state.json").exists()


def test_huge_learning_rate_stops_as_diverged(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")
    kind, error = bridge.run("tune", tune_params(tiny_model_dir, name="boom", iters=40, lr=1e20, scale=1e20, grad_clip=0.0))
    assert kind == "error", error
    assert error["code"] == "diverged"
    assert "--lr" in error["message"]
    run = tmp_path / "runs" / "boom"
    assert (run / "adapters.safetensors").exists()
    assert json.loads((run / "result.json").read_text())["status"] == "diverged"


def test_resume_replays_the_same_loss_trajectory(tiny_model_dir, tmp_path):
    bridge = make_service(tmp_path / "runs")
    kind, whole = bridge.run("tune", tune_params(tiny_model_dir, name="whole", iters=12, save_every=6))
    assert kind == "result", whole
    straight = losses(bridge.named("progress"))

    bridge.events.clear()
    kind, first = bridge.run("tune", tune_params(tiny_model_dir, name="halves", iters=6, save_every=6))
    assert kind == "result", first
    kind, second = bridge.run("tune", tune_params(tiny_model_dir, name="halves", iters=12, save_every=6, resume=True))
    assert kind == "result", second
    assert second["resumed_from"] == 6 and second["steps"] == 12
    resumed = losses(bridge.named("progress"))
    assert resumed == pytest.approx(straight, rel=1e-4, abs=1e-5)
    lines = (tmp_path / "runs" / "halves" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == list(range(1, 13))


@pytest.mark.parametrize(
    "overrides, code, needle",
    [
        ({"keys": ["self_attn.nope"]}, "bad_config", "self_attn.q_proj"),
        ({"layers": 9}, "bad_config", "4 blocks"),
        ({"data": {"train": {"source": "data/x.jsonl", "text": '{"messages": []}\n{"text": "ok"}\nnot json\n'}}}, "bad_data", "data/x.jsonl line 1"),
        ({"data": {"train": {"source": "data/x.jsonl", "text": '{"text": "ok"}\n\n{"text": "fine"}\n{broken\n'}}}, "bad_data", "data/x.jsonl line 4: not valid JSON"),
        ({"data": {"train": {"source": "cell", "text": '{"text": "a"}\n{"question": "q"}\n'}}}, "bad_data", "cell line 2: a row needs 'messages', 'prompt'+'completion' or 'text'; got keys 'question'"),
        ({"resume": True, "name": "never-ran"}, "bad_config", "no checkpoint"),
        ({"lr": "fast"}, "bad_request", "'lr' must be a number"),
    ],
)
def test_bad_settings_are_named(tiny_model_dir, tmp_path, overrides, code, needle):
    bridge = make_service(tmp_path / "runs")
    kind, error = bridge.run("tune", tune_params(tiny_model_dir, **overrides))
    assert kind == "error"
    assert error["code"] == code, error
    assert needle in error["message"], error["message"]


def test_warmup_raises_the_learning_rate_over_its_first_steps_and_resume_keeps_it(tiny_model_dir, tmp_path):
    # --warmup is declared once (options.py) and reaches the optimizer as MLX's own schedule.
    bridge = make_service(tmp_path / "runs")
    kind, result = bridge.run("tune", tune_params(tiny_model_dir, name="warm", iters=8, lr=1e-2, warmup=4, save_every=4))
    assert kind == "result", result
    lrs = [p["lr"] for p in bridge.named("progress")]
    # The rate each step used: mlx's linear_schedule starts at 0 on step 1, as mlx-lm's warmup does.
    assert lrs == pytest.approx([1e-2 * min(k, 4) / 4 for k in range(8)], rel=1e-5), lrs
    kind, error = bridge.run("tune", tune_params(tiny_model_dir, name="warm", iters=12, lr=1e-2, warmup=2, save_every=4, resume=True))
    assert kind == "error" and error["code"] == "bad_config" and "warmup 4 -> 2" in error["message"], error
