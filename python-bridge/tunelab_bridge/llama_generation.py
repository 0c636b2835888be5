"""Which engine answers `generate`, and llama.cpp's side of it.

llama.cpp answers on the CPU when three things hold: MLX runs on the CPU here (on Metal or CUDA
MLX is the faster engine and keeps generating), the loaded model is the embedded SmolLM2 (its
GGUF file is the base llama.cpp loads; other models exist here only as MLX directories), and
llama.cpp's build passed its check on this CPU (llama_build.py). Otherwise MLX answers, and the
result says why. The adapter is the one the bridge has active (adapters.AdapterManager validates
and switches it as before); llama.cpp applies the same adapter from its GGUF export, written
next to the run's adapters.safetensors whenever that is newer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from .protocol import BridgeError

ENGINES = ("auto", "mlx", "llama.cpp")
# Token text is sent on at most this often. llama.cpp's threads fill every core, and each event
# wakes the bridge's socket thread and the kernel: one event per token (~140/s here) cost 15% of
# the decode rate through the bridge, measured against the same engine in-process; a person reading
# the stream sees no difference at 20 updates a second.
STREAM_INTERVAL_S = 0.05


def _is_embedded(loaded: Any) -> bool:
    from .default_model import default_model_dir

    try:
        return Path(loaded.path).resolve() == default_model_dir().resolve()
    except OSError:
        return False


def why_not_llama(loaded: Any, device: str) -> Optional[str]:
    """None when llama.cpp should answer for this model on this device, else the reason in words."""
    from . import llama_build

    if "cpu" not in device.lower():
        return f"MLX generates on the GPU here ({device}), faster than llama.cpp on the CPU"
    if not _is_embedded(loaded):
        return f"llama.cpp runs the embedded model's GGUF file; {loaded.name} is an MLX model directory"
    state = llama_build.status()
    if state["built"] and state["check"] is None:
        # Built on this CPU but not checked yet (a cache copied in, an interrupted set-up): the
        # check is a forked child of a few seconds, once.
        llama_build.ensure_checked(lambda _line: None)
        state = llama_build.status()
    return None if state["ok"] else str(state.get("unavailable") or "llama.cpp is not ready")


class LlamaGeneration:
    """The llama.cpp engine of the embedded model (loaded on first use, kept), and its adapters."""

    def __init__(self) -> None:
        self.engine: Any = None

    def _engine(self) -> Any:
        if self.engine is None:
            from .default_model import gguf_file
            from .llama_engine import LlamaEngine

            self.engine = LlamaEngine(gguf_file(lambda _line: None))
        return self.engine

    @staticmethod
    def adapter_file(name: str, root: Path) -> Path:
        """The GGUF export of the adapter in `root`, (re)written when the adapter is newer.

        Beside the adapter when its directory is writable (a run directory), else in the cache.
        """
        from . import adapter_export
        from .cache import cache_dir

        target = Path(root) / adapter_export.GGUF_FILE
        if adapter_export.gguf_is_current(root, target):
            return target
        try:
            return adapter_export.write_gguf(root, target)
        except PermissionError:
            digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
            target = cache_dir() / "adapters-gguf" / f"{Path(root).name}-{digest}.gguf"
            if adapter_export.gguf_is_current(root, target):
                return target
            return adapter_export.write_gguf(root, target)

    def generate(
        self,
        tokens: list,
        sampling: Any,
        adapter: Optional[Any],
        *,
        cancelled: Callable[[], bool],
        on_text: Optional[Callable[[str], None]],
    ) -> Dict[str, Any]:
        """`sampling` is generation.Sampling; `adapter` an adapters.Adapter or None (the base)."""
        from . import llama_build

        engine = self._engine()
        name = None
        load_ms = 0.0
        if adapter is not None:
            name = adapter.name
            before = engine.adapters.get(name)
            loaded = engine.load_adapter(name, self.adapter_file(name, adapter.path))
            load_ms = loaded.load_ms if loaded is not before else 0.0
        stream = _Coalesced(on_text) if on_text is not None else None
        try:
            done = engine.generate(
                tokens,
                sampling,
                adapter=name,
                cancelled=cancelled,
                on_text=stream.add if stream is not None else None,
            )
        finally:
            if stream is not None:
                stream.flush()
        return {
            "text": done.text,
            "tokens": len(done.tokens),
            "prompt_tokens": done.prompt_tokens,
            "tokens_per_s": round(done.tokens_per_s, 3),
            "prompt_tps": round(done.prompt_tps, 3),
            "finish_reason": done.finish_reason,
            "seconds": round(done.prefill_s + done.decode_s, 4),
            "engine": "llama.cpp",
            "engine_detail": f"llama.cpp (llama-cpp-python {llama_build.VERSION}), {engine.path.name}, {engine.threads} threads",
            "switch_ms": round(done.switch_ms, 3),
            "adapter_load_ms": round(load_ms, 3),
        }


class _Coalesced:
    """Hands text on in pieces at most every STREAM_INTERVAL_S (and whatever is left at the end)."""

    def __init__(self, send: Callable[[str], None]):
        import time

        self._send = send
        self._clock = time.perf_counter
        self._parts: list = []
        self._last = self._clock()

    def add(self, text: str) -> None:
        self._parts.append(text)
        now = self._clock()
        if now - self._last >= STREAM_INTERVAL_S:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            self._send(text)


def choose(requested: str, loaded: Any, device: str) -> tuple:
    """("llama.cpp" | "mlx", why MLX when it is MLX) for the `engine` parameter of generate."""
    if requested not in ENGINES:
        raise BridgeError("bad_request", f"generate: 'engine' must be one of {', '.join(ENGINES)}, got '{requested}'.")
    if requested == "mlx":
        return "mlx", "asked for MLX"
    reason = why_not_llama(loaded, device)
    if reason is None:
        return "llama.cpp", None
    if requested == "llama.cpp":
        raise BridgeError("engine_unavailable", f"generate: llama.cpp cannot answer here: {reason}.")
    return "mlx", reason
