"""Which base model the bridge holds: resolve a `model` parameter, load it once, describe it.

`null` is the embedded SmolLM2 (converted once by `default_model`), a local directory is an
mlx-lm model directory, anything else is a Hugging Face repo id (which needs the Hub).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .protocol import BridgeError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct (embedded)"
# Points `model: null` at another local model directory (tests, air-gapped installs).
DEFAULT_MODEL_ENV = "TUNELAB_BRIDGE_DEFAULT_MODEL"

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

Log = Callable[[str], None]


@dataclass
class LoadedModel:
    name: str
    path: Path
    model: Any
    tokenizer: Any
    config: dict[str, Any]
    load_seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(self.model.layers)

    def block_keys(self) -> list[str]:
        """Paths of the linear layers inside one block: what `keys` may name."""
        import mlx.nn as nn

        keys = []
        for name, module in self.model.layers[-1].named_modules():
            if isinstance(module, (nn.Linear, nn.QuantizedLinear)) or type(module).__name__.startswith("LoRA"):
                keys.append(name)
        # A LoRA wrapper's own `.linear` is not a separate target.
        return sorted(k for k in keys if not k.endswith(".linear"))


def _wants_float32() -> bool:
    import mlx.core as mx

    # fp16/bf16 matmuls have no fast path on the CPU backend (about 100x slower than float32).
    return mx.default_device() == mx.cpu or not mx.metal.is_available()


def describe(loaded: LoadedModel) -> dict[str, Any]:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.utils import get_total_parameters

    config = loaded.config
    weights = [v for _, v in tree_flatten(loaded.model.parameters()) if mx.issubdtype(v.dtype, mx.floating)]
    quantized = "quantization" in config or any(
        isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in loaded.model.named_modules()
    )
    return {
        "name": loaded.name,
        "path": str(loaded.path),
        "model_type": config.get("model_type"),
        "num_layers": loaded.num_layers,
        "hidden_size": config.get("hidden_size"),
        "vocab_size": config.get("vocab_size"),
        "parameters": int(get_total_parameters(loaded.model)),
        "dtype": str(weights[0].dtype).replace("mlx.core.", "") if weights else None,
        "quantized": bool(quantized),
        "load_seconds": round(loaded.load_seconds, 3),
    }


def _stop_at_document_end(tokenizer: Any) -> None:
    """Generation also ends at the vocabulary's document-end token (llama.cpp ends there too): a
    chat model fine-tuned on a few answers sometimes closes one with <|endoftext|> instead of
    its chat template's end-of-turn token, and would otherwise write on past it."""
    vocab = getattr(getattr(tokenizer, "_tokenizer", None), "get_vocab", lambda: {})()
    if "<|endoftext|>" in vocab:
        tokenizer.add_eos_token("<|endoftext|>")


class ModelStore:
    """Holds at most one base model, loaded on first use and kept across requests."""

    def __init__(self) -> None:
        self.current: LoadedModel | None = None

    def ensure(self, spec: str | None, log: Log, *, keep_loaded: bool = True) -> LoadedModel:
        """The model for `spec`. With keep_loaded, `None` means the loaded model if any."""
        if spec is None and keep_loaded and self.current is not None:
            return self.current
        name, path_or_repo = self._resolve(spec, log)
        if self.current is not None and self.current.path == Path(path_or_repo):
            return self.current
        # Release the old model before loading the next one: two may not fit in memory.
        self.current = None
        self.current = self._load(name, path_or_repo, log)
        return self.current

    def _resolve(self, spec: str | None, log: Log) -> tuple[str, str]:
        if spec is None or spec == "":
            override = os.environ.get(DEFAULT_MODEL_ENV)
            if override:
                return Path(override).name, str(Path(override).resolve())
            from .default_model import DefaultModelUnavailable, ensure_default_model

            try:
                return DEFAULT_MODEL_NAME, str(Path(ensure_default_model(log)).resolve())
            except DefaultModelUnavailable as error:
                # Its message already says what to run (`tunelab setup`).
                raise BridgeError("model_not_found", str(error)) from None
        path = Path(spec).expanduser()
        if path.exists():
            if not path.is_dir() or not (path / "config.json").exists():
                raise BridgeError("model_not_found", f"{spec} is not an mlx-lm model directory (it needs config.json, model*.safetensors and tokenizer files).")
            return path.name, str(path.resolve())
        if not _REPO_ID.match(spec):
            raise BridgeError("model_not_found", f"there is no model directory at {spec}; pass an existing mlx-lm model directory, a Hugging Face repo id (org/name), or omit --model for the embedded SmolLM2.")
        return spec, spec

    def _load(self, name: str, path_or_repo: str, log: Log) -> LoadedModel:
        import mlx.core as mx
        from mlx_lm import load

        local = Path(path_or_repo).exists()
        log(f"loading {name}")
        started = time.perf_counter()
        if not local:
            # Fail fast rather than hang when the Hub is unreachable.
            os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
            os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
        try:
            model, tokenizer, config = load(path_or_repo, return_config=True)
        except Exception as error:  # noqa: BLE001 - mlx-lm and the Hub raise many types
            if not local:
                raise BridgeError(
                    "model_not_found",
                    f"could not download {path_or_repo} from the Hugging Face Hub (offline?); pass a local mlx-lm model directory or omit --model to use the embedded SmolLM2.",
                    f"{type(error).__name__}: {error}",
                ) from None
            raise BridgeError(
                "model_load_failed",
                f"could not load the model in {path_or_repo} ({type(error).__name__}: {error}); check that it is an mlx-lm model directory.",
            ) from None
        if _wants_float32():
            model.set_dtype(mx.float32)
        _stop_at_document_end(tokenizer)
        model.freeze()
        model.eval()
        mx.eval(model.parameters())
        loaded = LoadedModel(
            name=name,
            path=Path(path_or_repo).resolve() if local else Path(path_or_repo),
            model=model,
            tokenizer=tokenizer,
            config=dict(config),
            load_seconds=time.perf_counter() - started,
        )
        loaded.info = describe(loaded)
        return loaded
