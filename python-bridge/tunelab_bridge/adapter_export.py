"""An mlx-lm LoRA adapter (adapters.safetensors + adapter_config.json, as a run directory holds
them) written in the formats other engines read: llama.cpp's GGUF LoRA (also Ollama's
`ADAPTER`), Hugging Face PEFT, and mlx-lm's own files. Every file is written to a temporary
name and renamed, so a reader sees the old export or the new one, never half of one.

The arithmetic is the same everywhere, only names, layouts and the scale's spelling differ:
    mlx-lm     y = W x + scale * (x @ lora_a) @ lora_b      lora_a (in, r), lora_b (r, out)
    PEFT       y = W x + (alpha / r) * B (A x)               A (r, in), B (out, r)
    llama.cpp  y = W x + (alpha / r) * b (a x)               a (r, in), b (out, r) as NumPy
                                                             shapes (GGUF stores ne reversed)
so A = lora_a^T, B = lora_b^T and alpha = scale * r.

One more difference for llama-architecture models: llama.cpp's converter reorders the rows of
Q and K inside each head for its rope kernel, and the embedded model was imported with that
order undone (gguf_import.unpermute_rows), so adapters here are trained in Hugging Face order.
A GGUF adapter's q/k `lora_b` rows (the output side) get llama.cpp's reordering; A is on the
input side and stays as it is.

    python -m tunelab_bridge.adapter_export RUN_DIR --format gguf|peft|mlx [--to PATH]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np

from .files import replace_directory
from .protocol import BridgeError

FORMATS = ("gguf", "peft", "mlx")
GGUF_FILE = "adapter.gguf"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
MLX_WEIGHTS = "adapters.safetensors"
MLX_CONFIG = "adapter_config.json"

# mlx-lm / Hugging Face module paths inside a block, and llama.cpp's tensor names for them.
_GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# model_type -> (GGUF general.architecture, whether llama.cpp's converter reorders Q/K rows).
_ARCHITECTURES = {"llama": ("llama", True), "qwen2": ("qwen2", False)}
_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(lora_a|lora_b)$")

# The embedded model's origin: PEFT adapters name the Hugging Face model they apply to, and the
# embedded SmolLM2 (imported with Hugging Face's row order) is that model's weights.
EMBEDDED_BASE_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class MlxAdapter:
    """An mlx-lm adapter read from disk: its config, its float32 matrices, and the base's config."""

    root: Path
    config: Dict[str, Any]
    weights: Dict[str, np.ndarray]
    base_config: Dict[str, Any]
    base_path: Optional[Path]

    @property
    def rank(self) -> int:
        return int(self.config["lora_parameters"]["rank"])

    @property
    def scale(self) -> float:
        return float(self.config["lora_parameters"]["scale"])

    @property
    def alpha(self) -> float:
        return self.scale * self.rank

    def pairs(self):
        """(layer index, module path inside the block, lora_a, lora_b) for every adapted linear."""
        seen = {}
        for key, value in self.weights.items():
            match = _KEY.match(key)
            if match is None:
                raise BridgeError("bad_config", f"the adapter in {self.root} holds {key}, which is not a LoRA matrix of a transformer block; only LoRA adapters of model.layers.N can be exported.")
            layer, module, part = int(match.group(1)), match.group(2), match.group(3)
            seen.setdefault((layer, module), {})[part] = value
        for (layer, module), parts in sorted(seen.items()):
            if set(parts) != {"lora_a", "lora_b"}:
                raise BridgeError("bad_config", f"the adapter in {self.root} has only {', '.join(parts)} for model.layers.{layer}.{module}; an adapter needs both lora_a and lora_b.")
            yield layer, module, parts["lora_a"], parts["lora_b"]


def _read_json(path: Path, what: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise BridgeError("adapter_not_found", f"{path} is missing; {what}.") from None
    except ValueError as error:
        raise BridgeError("bad_config", f"{path} is not valid JSON ({error}).") from None


def read_adapter(root: Path, base_dir: Optional[Path] = None) -> MlxAdapter:
    """The adapter in `root` (a run directory or any directory with mlx-lm's two adapter files).

    `base_dir` is the base model's mlx-lm directory; by default the one adapter_config.json names.
    """
    from safetensors.numpy import load_file

    root = Path(root)
    config = _read_json(root / MLX_CONFIG, "export needs an mlx-lm adapter (adapters.safetensors and adapter_config.json), such as a finished %tune run")
    if config.get("fine_tune_type", "lora") != "lora":
        raise BridgeError("bad_config", f"the adapter in {root} is a {config.get('fine_tune_type')} adapter; only LoRA adapters can be exported.")
    if not (root / MLX_WEIGHTS).is_file():
        raise BridgeError("adapter_not_found", f"{root / MLX_WEIGHTS} is missing; the run has no adapter yet (it may still be training, or it failed before its first save).")
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in load_file(str(root / MLX_WEIGHTS)).items()}
    base = Path(base_dir) if base_dir is not None else (Path(config["model"]).expanduser() if config.get("model") else None)
    if base is None or not (base / "config.json").is_file():
        raise BridgeError("model_not_found", f"the base model of the adapter in {root} is not at {base or '(unnamed)'}; pass its mlx-lm directory.")
    return MlxAdapter(root, config, weights, _read_json(base / "config.json", "the base model directory needs its config.json"), base.resolve())


def llama_cpp_permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter's Q/K reordering (conversion/llama.py `permute`) of output rows:
    per head, the two rope halves become interleaved pairs. Inverse of gguf_import.unpermute_rows."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def gguf_tensors(adapter: MlxAdapter) -> Dict[str, np.ndarray]:
    """llama.cpp's tensor names and NumPy layouts: blk.N.attn_q.weight.lora_a (r, in), .lora_b (out, r)."""
    model_type = adapter.base_config.get("model_type")
    if model_type not in _ARCHITECTURES:
        raise BridgeError("bad_config", f"GGUF adapters can be written for llama and qwen2 models; the base of {adapter.root} is '{model_type}'.")
    _, reorders_qk = _ARCHITECTURES[model_type]
    heads = {
        "self_attn.q_proj": int(adapter.base_config["num_attention_heads"]),
        "self_attn.k_proj": int(adapter.base_config.get("num_key_value_heads") or adapter.base_config["num_attention_heads"]),
    }
    out: Dict[str, np.ndarray] = {}
    for layer, module, lora_a, lora_b in adapter.pairs():
        name = _GGUF_NAMES.get(module)
        if name is None:
            raise BridgeError("bad_config", f"the adapter in {adapter.root} adapts {module}, which has no llama.cpp tensor; GGUF export supports {', '.join(_GGUF_NAMES)}.")
        a = np.ascontiguousarray(lora_a.T)  # (r, in)
        b = lora_b.T  # (out, r)
        if reorders_qk and module in heads:
            b = llama_cpp_permute(b, heads[module])
        out[f"blk.{layer}.{name}.weight.lora_a"] = a
        out[f"blk.{layer}.{name}.weight.lora_b"] = np.ascontiguousarray(b)
    return out


def _temporary(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, target: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def write_gguf(run_dir: Path, out: Optional[Path] = None, base_dir: Optional[Path] = None) -> Path:
    """The adapter of `run_dir` as a llama.cpp GGUF LoRA file (default: RUN_DIR/adapter.gguf).

    The hook %tune's finish step calls: afterwards llama.cpp (and Ollama's `ADAPTER`) can load it.
    """
    import gguf

    adapter = read_adapter(Path(run_dir), base_dir)
    tensors = gguf_tensors(adapter)
    arch, _ = _ARCHITECTURES[adapter.base_config["model_type"]]
    target = Path(out) if out is not None else Path(run_dir) / GGUF_FILE
    tmp = _temporary(target)
    try:
        writer = gguf.GGUFWriter(str(tmp), arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(adapter.alpha))
        writer.add_name(Path(run_dir).resolve().name)
        for name, value in tensors.items():
            writer.add_tensor(name, value)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        _publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def gguf_is_current(run_dir: Path, path: Optional[Path] = None) -> bool:
    """True when the GGUF export exists and is newer than the adapter it was written from."""
    path = Path(path) if path is not None else Path(run_dir) / GGUF_FILE
    try:
        return path.stat().st_mtime_ns >= (Path(run_dir) / MLX_WEIGHTS).stat().st_mtime_ns
    except FileNotFoundError:
        return False


def peft_base_name(adapter: MlxAdapter) -> str:
    from .default_model import default_model_dir

    try:
        embedded = adapter.base_path is not None and adapter.base_path == default_model_dir().resolve()
    except OSError:
        embedded = False
    return EMBEDDED_BASE_REPO if embedded else str(adapter.config.get("model") or adapter.base_path)


def peft_files(adapter: MlxAdapter) -> tuple:
    """(tensors, adapter_config) in PEFT's layout: base_model.model.<module>.lora_A.weight (r, in),
    lora_B.weight (out, r); lora_alpha = scale * r."""
    tensors: Dict[str, np.ndarray] = {}
    layers, modules = set(), set()
    for layer, module, lora_a, lora_b in adapter.pairs():
        prefix = f"base_model.model.model.layers.{layer}.{module}"
        tensors[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(lora_a.T)
        tensors[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(lora_b.T)
        layers.add(layer)
        modules.add(module.rsplit(".", 1)[-1])
    lora = adapter.config["lora_parameters"]
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": peft_base_name(adapter),
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": float(lora.get("dropout", 0.0)),
        "target_modules": sorted(modules),
        "layers_to_transform": sorted(layers),
        "layers_pattern": "layers",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "revision": None,
    }
    return tensors, config


def _write_dir(target: Path, write: Callable[[Path], None]) -> Path:
    """Builds a directory under a temporary name and renames it over `target` (an older export
    is set aside first, then removed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(building)
        for path in building.iterdir():
            _publish_in_place(path)
        building.chmod(0o755)
        replace_directory(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def _publish_in_place(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(path, 0o644)


def write_peft(run_dir: Path, out: Path, base_dir: Optional[Path] = None) -> Path:
    from safetensors.numpy import save_file

    tensors, config = peft_files(read_adapter(Path(run_dir), base_dir))

    def write(folder: Path) -> None:
        # PEFT's own files carry this metadata; loaders that check it expect "pt".
        save_file(tensors, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
        (folder / PEFT_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    return _write_dir(out, write)


def write_mlx(run_dir: Path, out: Path, base_dir: Optional[Path] = None) -> Path:
    adapter = read_adapter(Path(run_dir), base_dir)  # checks it is a complete LoRA adapter

    def write(folder: Path) -> None:
        shutil.copyfile(adapter.root / MLX_WEIGHTS, folder / MLX_WEIGHTS)
        shutil.copyfile(adapter.root / MLX_CONFIG, folder / MLX_CONFIG)

    return _write_dir(out, write)


def export(run_dir: Path, fmt: str, to: Optional[Path] = None, base_dir: Optional[Path] = None) -> Dict[str, Any]:
    """`%adapters --export NAME --format gguf|peft|mlx [--to PATH]`: what was written, and where.

    Default destinations: RUN_DIR/adapter.gguf, RUN_DIR/export-peft/, RUN_DIR/export-mlx/.
    """
    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise BridgeError("bad_request", f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'.")
    if fmt == "gguf":
        target = Path(to) if to is not None else run_dir / GGUF_FILE
        if target.is_dir():
            target = target / f"{run_dir.resolve().name}.gguf"
        path = write_gguf(run_dir, target, base_dir)
        files = [path]
    else:
        target = Path(to) if to is not None else run_dir / f"export-{fmt}"
        path = (write_peft if fmt == "peft" else write_mlx)(run_dir, target, base_dir)
        files = sorted(path.iterdir())
    return {"format": fmt, "path": str(path), "files": [{"name": f.name, "bytes": f.stat().st_size} for f in files]}


def _main(argv: list) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tunelab_bridge.adapter_export", description="Export an mlx-lm LoRA adapter.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--to", type=Path)
    parser.add_argument("--base", type=Path, help="the base model's mlx-lm directory (default: the one adapter_config.json names)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(export(args.run_dir, args.format, args.to, args.base)))
    except BridgeError as error:
        print(error.message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
