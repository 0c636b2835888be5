"""Adapter export: a LoRA adapter trained here, written as llama.cpp's GGUF LoRA, as PEFT's files
and as mlx-lm's, with the names, layouts and scale each reader expects. (Loading the GGUF export
in llama.cpp itself is in test_llama_engine.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs import make_service
from test_training import tune_params

KEYS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"]


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    bridge = make_service(runs)
    kind, result = bridge.run("tune", tune_params(tiny_model_dir, name="export-me", iters=6, lr=1e-2, layers=3, keys=KEYS, save_every=0, rank=4, scale=10.0))
    assert kind == "result", result
    return Path(result["run_dir"])


def mlx_pairs(run: Path):
    from safetensors.numpy import load_file

    return load_file(str(run / "adapters.safetensors"))


def test_llama_cpp_permute_is_the_inverse_of_the_import():
    import mlx.core as mx

    from tunelab_bridge.adapter_export import llama_cpp_permute
    from tunelab_bridge.gguf_import import unpermute_rows

    rows = np.arange(9 * 64 * 3, dtype=np.float32).reshape(9 * 64, 3)
    permuted = llama_cpp_permute(rows, 9)
    assert not np.array_equal(permuted, rows)
    assert np.array_equal(np.array(unpermute_rows(mx.array(permuted), 9)), rows)
    # Within a head: the two rope halves become interleaved pairs, as llama.cpp's converter does.
    head = rows[:64, 0]
    assert list(permuted[:4, 0]) == [head[0], head[32], head[1], head[33]]


def test_gguf_export_has_llama_cpp_names_layouts_and_alpha(trained_run, tiny_model_dir):
    import gguf

    from tunelab_bridge.adapter_export import llama_cpp_permute, write_gguf

    path = write_gguf(trained_run)
    assert path == trained_run / "adapter.gguf"
    assert not [p for p in trained_run.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama"
    assert reader.fields["adapter.lora.alpha"].types == [gguf.GGUFValueType.FLOAT32]
    assert fields["adapter.lora.alpha"] == pytest.approx(10.0 * 4)  # scale x rank

    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    config = json.loads((tiny_model_dir / "config.json").read_text())
    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "mlp.down_proj": "ffn_down"}
    weights = mlx_pairs(trained_run)
    layers = range(config["num_hidden_layers"] - 3, config["num_hidden_layers"])
    assert len(tensors) == 2 * len(names) * len(layers)
    for layer in layers:
        for module, short in names.items():
            a = weights[f"model.layers.{layer}.{module}.lora_a"]  # (in, r)
            b = weights[f"model.layers.{layer}.{module}.lora_b"]  # (r, out)
            got_a = tensors[f"blk.{layer}.{short}.weight.lora_a"]
            got_b = tensors[f"blk.{layer}.{short}.weight.lora_b"]
            assert got_a.dtype == np.float32 and got_a.shape == (4, a.shape[0])  # (r, in)
            assert got_b.shape == (b.shape[1], 4)  # (out, r)
            np.testing.assert_array_equal(got_a, a.T)
            kind = module.rsplit(".", 1)[1]
            want_b = llama_cpp_permute(b.T, heads[kind]) if kind in heads else b.T
            np.testing.assert_array_equal(got_b, want_b)
    # GGUF stores dimensions innermost first: lora_a's ne is (in, r), matching the base's ne[0].
    first = next(t for t in reader.tensors if t.name.endswith("attn_q.weight.lora_a"))
    assert list(first.shape) == [config["hidden_size"], 4]


def test_peft_export_has_peft_names_shapes_and_config(trained_run, tiny_model_dir, tmp_path):
    from safetensors import safe_open

    from tunelab_bridge.adapter_export import export

    out = tmp_path / "peft"
    done = export(trained_run, "peft", out)
    assert done["format"] == "peft" and Path(done["path"]) == out
    assert sorted(f["name"] for f in done["files"]) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert config["r"] == 4 and config["lora_alpha"] == pytest.approx(40.0)
    assert config["target_modules"] == ["down_proj", "k_proj", "q_proj", "v_proj"]
    assert config["layers_to_transform"] == [1, 2, 3]
    assert config["base_model_name_or_path"] == str(tiny_model_dir)

    weights = mlx_pairs(trained_run)
    with safe_open(str(out / "adapter_model.safetensors"), framework="numpy") as handle:
        assert handle.metadata() == {"format": "pt"}
        keys = set(handle.keys())
        assert len(keys) == len(weights)
        for layer in (1, 2, 3):
            for module in KEYS:
                prefix = f"base_model.model.model.layers.{layer}.{module}"
                a = handle.get_tensor(f"{prefix}.lora_A.weight")
                b = handle.get_tensor(f"{prefix}.lora_B.weight")
                mlx_a = weights[f"model.layers.{layer}.{module}.lora_a"]
                mlx_b = weights[f"model.layers.{layer}.{module}.lora_b"]
                assert a.shape == (4, mlx_a.shape[0]) and b.shape == (mlx_b.shape[1], 4)
                # PEFT's delta W (out, in) = alpha / r * B A equals mlx-lm's scale * (a b)^T.
                peft_delta = config["lora_alpha"] / config["r"] * (b.astype(np.float64) @ a)
                mlx_delta = 10.0 * (mlx_a.astype(np.float64) @ mlx_b).T
                np.testing.assert_allclose(peft_delta, mlx_delta, rtol=1e-5, atol=1e-7)


def test_mlx_export_loads_in_mlx_lm(trained_run, tiny_model_dir, tmp_path):
    from mlx_lm import load

    from tunelab_bridge.adapter_export import export

    out = tmp_path / "mlx"
    export(trained_run, "mlx", out)
    assert (out / "adapters.safetensors").read_bytes() == (trained_run / "adapters.safetensors").read_bytes()
    model, _ = load(str(tiny_model_dir), adapter_path=str(out))
    assert type(model.layers[-1].self_attn.q_proj).__name__ == "LoRALinear"
    # Exporting again replaces the folder whole, leaving nothing beside it.
    export(trained_run, "mlx", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlx"]


def test_bad_input_is_one_sentence(trained_run, tmp_path):
    from tunelab_bridge.adapter_export import export
    from tunelab_bridge.protocol import BridgeError

    with pytest.raises(BridgeError, match="--format must be one of gguf, peft, mlx, got 'onnx'"):
        export(trained_run, "onnx")
    with pytest.raises(BridgeError, match="adapter_config.json is missing"):
        export(tmp_path, "gguf")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"fine_tune_type": "dora", "model": "x"}))
    with pytest.raises(BridgeError, match="only LoRA adapters can be exported"):
        export(tmp_path, "peft")


def test_tune_writes_the_gguf_form_and_the_bridge_exports_a_run_by_name(trained_run, tmp_path):
    result = json.loads((trained_run / "result.json").read_text())
    assert result["gguf"] == str(trained_run / "adapter.gguf") and (trained_run / "adapter.gguf").is_file()

    # A fresh bridge: exporting reads the run's files and needs no model loaded.
    bridge = make_service(trained_run.parent)
    kind, done = bridge.run("adapters.export", {"name": "export-me", "format": "peft", "to": str(tmp_path / "peft")})
    assert kind == "result", done
    assert done["name"] == "export-me" and done["path"] == str(tmp_path / "peft")
    assert sorted(f["name"] for f in done["files"]) == ["adapter_config.json", "adapter_model.safetensors"]
    assert bridge.service.store.current is None
    kind, done = bridge.run("adapters.export", {"name": "export-me"})
    assert kind == "result" and done["format"] == "gguf" and done["path"] == str(trained_run / "adapter.gguf")

    kind, error = bridge.run("adapters.export", {"name": "export-me", "format": "onnx"})
    assert kind == "error" and error["message"] == "adapters.export: 'format' must be one of gguf, peft, mlx, got \"onnx\"."
    kind, error = bridge.run("adapters.export", {"name": "nobody"})
    assert kind == "error" and error["code"] == "adapter_not_found" and "export-me" in error["message"]
    kind, error = bridge.run("adapters.export", {})
    assert kind == "error" and "'name'" in error["message"]
