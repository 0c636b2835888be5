"""LoRA adapters over one resident base model.

The base weights never move. Adapters are read from disk once and kept in memory; switching
copies the cached low-rank matrices into LoRA layers that stay in the model (rebuilt only when
the next adapter has another layout: layers, keys or rank) and sets their scale. "none" sets
every scale to zero, which is exactly the base model.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import BridgeError
from .runs import RunDir, list_runs


@dataclass(frozen=True)
class Layout:
    num_layers: int
    keys: tuple[str, ...] | None
    rank: int

    @staticmethod
    def from_config(config: dict[str, Any]) -> "Layout":
        lora = config.get("lora_parameters") or {}
        keys = lora.get("keys")
        return Layout(int(config["num_layers"]), tuple(sorted(keys)) if keys else None, int(lora["rank"]))


@dataclass
class Adapter:
    name: str
    path: Path
    config: dict[str, Any]
    weights: dict[str, Any]

    @property
    def layout(self) -> Layout:
        return Layout.from_config(self.config)

    @property
    def scale(self) -> float:
        return float(self.config["lora_parameters"]["scale"])


def apply_layout(model: Any, layout: Layout, *, scale: float, dropout: float = 0.0) -> None:
    """Replace the model's LoRA layers (if any) by fresh ones of `layout`."""
    from mlx_lm.tuner.utils import linear_to_lora_layers, remove_lora_layers

    remove_lora_layers(model)
    config: dict[str, Any] = {"rank": layout.rank, "scale": scale, "dropout": dropout}
    if layout.keys is not None:
        config["keys"] = list(layout.keys)
    linear_to_lora_layers(model, layout.num_layers, config)


def locate(runs_root: Path, name: str) -> tuple[str, Path]:
    """(the adapter's key, its directory) for a run name under `runs_root` or an adapter directory."""
    run = RunDir(runs_root / name)
    if run.adapters.exists() and run.adapter_config.exists():
        return name, run.root
    path = Path(name).expanduser()
    if (path / "adapters.safetensors").exists() and (path / "adapter_config.json").exists():
        return str(path), path.resolve()
    runs = ", ".join(r["name"] for r in list_runs(runs_root) if r["has_adapter"]) or "none yet"
    raise BridgeError("adapter_not_found", f"no adapter named {name!r}: it is neither a run in {runs_root} (runs with adapters: {runs}) nor a directory holding adapters.safetensors and adapter_config.json.")


class AdapterManager:
    def __init__(self, model: Any, runs_root: Path):
        self.model = model
        self.runs_root = runs_root
        self._adapters: dict[str, Adapter] = {}
        self._lock = threading.Lock()
        self.layout: Layout | None = None
        self.active: str | None = None  # what generation answers with
        self._applied: str | None = None  # what the MLX model's LoRA layers hold now
        self._slot_cache: list[tuple[Any, str, str]] | None = None

    # Read by the socket thread (adapters.list, status) while the worker mutates.
    def loaded_names(self) -> list[str]:
        with self._lock:
            return list(self._adapters)

    def _locate(self, name: str) -> tuple[str, Path]:
        return locate(self.runs_root, name)

    def load(self, name: str) -> tuple[Adapter, float]:
        import mlx.core as mx

        started = time.perf_counter()
        key, path = self._locate(name)
        with open(path / "adapter_config.json", encoding="utf-8") as handle:
            config = json.load(handle)
        if config.get("fine_tune_type", "lora") != "lora":
            raise BridgeError("bad_config", f"adapter {name!r} is a {config.get('fine_tune_type')} adapter; only LoRA adapters can be switched on a resident base model.")
        weights = mx.load(str(path / "adapters.safetensors"))
        mx.eval(list(weights.values()))
        adapter = Adapter(key, path, config, weights)
        self._check_fits(adapter)
        with self._lock:
            self._adapters[key] = adapter
        return adapter, (time.perf_counter() - started) * 1000

    def add(self, name: str, path: Path, config: dict[str, Any], weights: dict[str, Any]) -> None:
        """Register an adapter just trained into the model (its layers are already in place)."""
        with self._lock:
            self._adapters[name] = Adapter(name, path, config, dict(weights))
        self.layout = Layout.from_config(config)
        self._slot_cache = None
        self.active = self._applied = name

    def unload(self, name: str) -> None:
        with self._lock:
            if name not in self._adapters:
                raise BridgeError("adapter_not_found", f"adapter {name!r} is not loaded; loaded adapters: {', '.join(self._adapters) or 'none'}.")
            del self._adapters[name]
        if self.active == name:
            self.switch("none")

    def get(self, name: str) -> Adapter:
        with self._lock:
            adapter = self._adapters.get(name)
        if adapter is None:
            adapter, _ = self.load(name)
        return adapter

    @property
    def applied(self) -> str | None:
        """The adapter the MLX model's LoRA layers hold now (None: none, or the base model)."""
        return self._applied

    def select(self, name: str | None) -> None:
        """Make `name` (or "none"/None: the base model) the active adapter, read from disk if it is
        not loaded yet, without touching the MLX model: when llama.cpp answers, the MLX layers are
        not used, and rebuilding them for another layout (12.7 ms measured) would be most of a
        switch. `apply()` puts it in place when MLX needs it."""
        self.active = None if name is None or name == "none" else self.get(name).name

    def switch(self, name: str | None) -> float:
        """Make `name` (or "none"/None: the base model) active in the MLX model; returns the
        milliseconds the switch took (a first read from disk is loading, not switching)."""
        self.select(name)
        return self.apply()

    def apply(self) -> float:
        """The active adapter in the MLX model's LoRA layers (a no-op when it already is); milliseconds taken."""
        started = time.perf_counter()
        if self._applied == self.active:
            return 0.0
        if self.active is None:
            for module, _, _ in self._slots():
                module.scale = 0.0
            self._applied = None
            return (time.perf_counter() - started) * 1000
        adapter = self.get(self.active)
        if self.layout != adapter.layout:
            apply_layout(self.model, adapter.layout, scale=adapter.scale)
            self.model.freeze()
            self.model.eval()
            self.layout = adapter.layout
            self._slot_cache = None
        weights = adapter.weights
        for module, a_key, b_key in self._slots():
            # Already-evaluated arrays: assigning them is a pointer swap, no copy, no graph.
            module.lora_a = weights[a_key]
            module.lora_b = weights[b_key]
            module.scale = adapter.scale
        self._applied = adapter.name
        return (time.perf_counter() - started) * 1000

    def _slots(self) -> list[tuple[Any, str, str]]:
        """(LoRA module, key of its A, key of its B) for the layout in place, found once."""
        from mlx_lm.tuner.lora import LoRALinear

        if self._slot_cache is None:
            self._slot_cache = [
                (module, f"{path}.lora_a", f"{path}.lora_b")
                for path, module in self.model.named_modules()
                if isinstance(module, LoRALinear)
            ]
        return self._slot_cache

    def strip(self) -> None:
        """Back to the plain base model with no LoRA layers (before training a new adapter)."""
        from mlx_lm.tuner.utils import remove_lora_layers

        remove_lora_layers(self.model)
        self.layout = None
        self._slot_cache = None
        self.active = self._applied = None

    def _check_fits(self, adapter: Adapter) -> None:
        layers = len(self.model.layers)
        if adapter.layout.num_layers > layers:
            raise BridgeError("bad_config", f"adapter {adapter.name!r} adapts {adapter.layout.num_layers} blocks but the loaded model has {layers}; it was trained on another base model.")
        block = dict(self.model.layers[-1].named_modules())
        for key in adapter.layout.keys or ():
            if key not in block:
                raise BridgeError("bad_config", f"adapter {adapter.name!r} targets {key}, which the loaded model's blocks do not have; it was trained on another base model.")
        modules = dict(self.model.named_modules())
        for name, value in adapter.weights.items():
            if not name.endswith((".lora_a", ".lora_b")):
                raise BridgeError("bad_config", f"adapter {adapter.name!r} holds {name}, which is not a LoRA matrix.")
            module_path = name.rsplit(".", 1)[0]
            target = modules.get(module_path)
            if target is None:
                raise BridgeError("bad_config", f"adapter {adapter.name!r} refers to {module_path}, which the loaded model does not have; it was trained on another base model.")
            base_module = target.linear if hasattr(target, "linear") else target
            out_dims, in_dims = base_module.weight.shape
            if hasattr(base_module, "bits"):
                in_dims = in_dims * 32 // base_module.bits
            want = (in_dims, adapter.layout.rank) if name.endswith(".lora_a") else (adapter.layout.rank, out_dims)
            if tuple(value.shape) != want:
                raise BridgeError("bad_config", f"adapter {adapter.name!r} has {name} of shape {tuple(value.shape)} where the loaded model needs {want}; it was trained on another base model.")
