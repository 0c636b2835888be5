"""A llama-architecture GGUF file as an ordinary mlx-lm model directory.

`mx.load` reads GGUF tensors (Q4_0/Q4_1/Q8_0 stay packed as MLX affine weight/scales/biases with
groups of 32) and metadata. What is left to do here:
- names: llama.cpp's (`blk.N.attn_q`) to Hugging Face's (`model.layers.N.self_attn.q_proj`), which
  mlx-lm's llama class expects;
- Q and K rows: llama.cpp's converter interleaves each head's halves for its rope kernel; they
  are put back in Hugging Face order, so that adapters trained here apply to the original weights
  and mlx-lm's default (non-traditional) rope is correct;
- the tokenizer: rebuilt from the GGUF vocabulary and merges with the `tokenizers` library.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlx.core as mx

GROUP_SIZE = 32  # every GGUF block type that mx.load keeps packed uses blocks of 32

_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

# SmolLM's pre-tokenizer (llama.cpp's `smollm` pre-type): every digit alone, then GPT-2's regex.
_PRE_TOKENIZERS = {"smollm"}


class GGUFImportError(ValueError):
    """The file is not a GGUF model this importer can turn into an mlx-lm directory."""


def _scalar(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    value = meta.get(key, default)
    if isinstance(value, mx.array):
        return value.item()
    return value


def _list(meta: dict[str, Any], key: str) -> list[Any]:
    value = meta.get(key)
    if value is None:
        raise GGUFImportError(f"the GGUF file has no '{key}' metadata")
    return value.tolist() if isinstance(value, mx.array) else list(value)


def _float32(value: Any) -> float:
    """GGUF stores float32: 1e-05 comes back as 9.99999974e-06; keep the digits a person wrote."""
    return float(format(float(value), ".7g"))


def hf_name(gguf_name: str) -> str:
    """`blk.3.attn_q.scales` -> `model.layers.3.self_attn.q_proj.scales`."""
    base, _, suffix = gguf_name.rpartition(".")
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", base)
    if match and match.group(2) in _BLOCK_NAMES:
        return f"model.layers.{match.group(1)}.{_BLOCK_NAMES[match.group(2)]}.{suffix}"
    if base in _TOP_NAMES:
        return f"{_TOP_NAMES[base]}.{suffix}"
    raise GGUFImportError(f"unexpected tensor '{gguf_name}' for a llama model")


def unpermute_rows(rows: mx.array, n_heads: int) -> mx.array:
    """Inverse of llama.cpp's `permute` for Q/K: per head, (2, d/2) interleaved rows -> (d/2, 2) halves.

    Works on any per-row tensor (float weights, packed 4-bit weights, their scales and biases),
    because the permutation only moves whole output rows.
    """
    out_features = rows.shape[0]
    per_head = out_features // n_heads
    return (
        rows.reshape(n_heads, per_head // 2, 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def model_config(meta: dict[str, Any], tied: bool) -> dict[str, Any]:
    arch = _scalar(meta, "general.architecture")
    if arch != "llama":
        raise GGUFImportError(f"only llama-architecture GGUF files can be imported, this one is '{arch}'")
    hidden = int(_scalar(meta, "llama.embedding_length"))
    heads = int(_scalar(meta, "llama.attention.head_count"))
    vocab = _scalar(meta, "llama.vocab_size")
    if vocab is None:
        vocab = len(_list(meta, "tokenizer.ggml.tokens"))
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": int(_scalar(meta, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_scalar(meta, "llama.attention.head_count_kv", heads)),
        "head_dim": int(_scalar(meta, "llama.rope.dimension_count", hidden // heads)),
        "intermediate_size": int(_scalar(meta, "llama.feed_forward_length")),
        "vocab_size": int(vocab),
        "max_position_embeddings": int(_scalar(meta, "llama.context_length", 2048)),
        "rms_norm_eps": _float32(_scalar(meta, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": _float32(_scalar(meta, "llama.rope.freq_base", 10000.0)),
        "rope_traditional": False,
        "rope_scaling": None,
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
    }
    for key, name in (("bos_token_id", "tokenizer.ggml.bos_token_id"), ("eos_token_id", "tokenizer.ggml.eos_token_id"), ("pad_token_id", "tokenizer.ggml.padding_token_id")):
        value = _scalar(meta, name)
        if value is not None:
            config[key] = int(value)
    return config


def build_tokenizer(meta: dict[str, Any]):
    """A `tokenizers.Tokenizer` equal to the original byte-level BPE (vocabulary, merges, specials)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    if _scalar(meta, "tokenizer.ggml.model") != "gpt2":
        raise GGUFImportError("only byte-level BPE ('gpt2') GGUF tokenizers can be imported")
    pre = _scalar(meta, "tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise GGUFImportError(f"the GGUF pre-tokenizer '{pre}' is not supported (supported: {', '.join(sorted(_PRE_TOKENIZERS))})")
    tokens = [str(t) for t in _list(meta, "tokenizer.ggml.tokens")]
    merges = [tuple(str(m).split(" ", 1)) for m in _list(meta, "tokenizer.ggml.merges")]
    types = _list(meta, "tokenizer.ggml.token_type") if "tokenizer.ggml.token_type" in meta else [1] * len(tokens)
    unk_id = _scalar(meta, "tokenizer.ggml.unknown_token_id")

    bpe = models.BPE(
        vocab={token: index for index, token in enumerate(tokens)},
        merges=merges,
        unk_token=tokens[int(unk_id)] if unk_id is not None else None,
        fuse_unk=False,
        byte_fallback=False,
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    # GGUF token type 3 = control: the chat markers and the other specials are never split or merged.
    specials = [AddedToken(tokens[i], special=True, normalized=False) for i, kind in enumerate(types) if int(kind) == 3]
    tokenizer.add_special_tokens(specials)
    return tokenizer


def tokenizer_config(meta: dict[str, Any], max_length: int) -> dict[str, Any]:
    tokens = _list(meta, "tokenizer.ggml.tokens")

    def token(key: str) -> str | None:
        value = _scalar(meta, key)
        return str(tokens[int(value)]) if value is not None else None

    types = _list(meta, "tokenizer.ggml.token_type") if "tokenizer.ggml.token_type" in meta else []
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "additional_special_tokens": [str(tokens[i]) for i, kind in enumerate(types) if int(kind) == 3],
        "add_bos_token": bool(_scalar(meta, "tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
    }
    template = _scalar(meta, "tokenizer.chat_template")
    if template:
        config["chat_template"] = str(template)
    return {k: v for k, v in config.items() if v is not None}


def _dequantized(weights: dict[str, mx.array], name: str) -> mx.array:
    packed = weights[name + ".weight"]
    scales = weights[name + ".scales"]
    bits = packed.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE)
    return mx.dequantize(packed, scales.astype(mx.float32), weights[name + ".biases"].astype(mx.float32), group_size=GROUP_SIZE, bits=bits)


def convert_weights(weights: dict[str, mx.array], config: dict[str, Any], quantized: bool) -> tuple[dict[str, mx.array], dict[str, Any] | None]:
    """HF-named weights (float32, or packed affine quantized) and mlx-lm's `quantization` entry."""
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    bases = sorted({name.rpartition(".")[0] for name in weights})
    out: dict[str, mx.array] = {}
    quantization: dict[str, Any] = {}
    for base in bases:
        target = hf_name(base + ".weight").rpartition(".")[0]
        kind = base.rpartition(".")[2]
        packed = base + ".scales" in weights
        if packed and not quantized:
            parts = {"weight": _dequantized(weights, base)}
        elif packed:
            scales = weights[base + ".scales"]
            bits = weights[base + ".weight"].shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE)
            parts = {
                "weight": weights[base + ".weight"],
                "scales": scales.astype(mx.float32),
                "biases": weights[base + ".biases"].astype(mx.float32),
            }
            quantization[target] = {"group_size": GROUP_SIZE, "bits": int(bits)}
        else:
            parts = {"weight": weights[base + ".weight"].astype(mx.float32)}
        if kind in heads:
            parts = {k: unpermute_rows(v, heads[kind]) for k, v in parts.items()}
        for suffix, value in parts.items():
            out[f"{target}.{suffix}"] = value
    if not quantization:
        return out, None
    # The most common setting becomes the default; the rest (e.g. an 8-bit embedding) are per-layer.
    settings = [json.dumps(v, sort_keys=True) for v in quantization.values()]
    default = json.loads(max(set(settings), key=settings.count))
    entry: dict[str, Any] = dict(default)
    for target, setting in quantization.items():
        if setting != default:
            entry[target] = setting
    return out, entry


def import_gguf(gguf_path: Path, out_dir: Path, quantized: bool = False) -> dict[str, Any]:
    """Writes config.json, model.safetensors and the tokenizer files of `gguf_path` into `out_dir`.

    The caller makes it atomic (build in a temporary directory, then rename). Returns the config.
    """
    try:
        weights, meta = mx.load(str(gguf_path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as error:
        raise GGUFImportError(f"could not read '{gguf_path}' as GGUF: {error}") from error
    tied = "output.weight" not in weights
    config = model_config(meta, tied)
    converted, quantization = convert_weights(weights, config, quantized)
    if quantization:
        config["quantization"] = quantization
    config["torch_dtype"] = "float32"

    out_dir.mkdir(parents=True, exist_ok=True)
    mx.eval(converted)
    mx.save_safetensors(str(out_dir / "model.safetensors"), converted, metadata={"format": "mlx"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    build_tokenizer(meta).save(str(out_dir / "tokenizer.json"))
    tok_config = tokenizer_config(meta, config["max_position_embeddings"])
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    special = {k: tok_config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token", "additional_special_tokens") if k in tok_config}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in config}
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    return config
