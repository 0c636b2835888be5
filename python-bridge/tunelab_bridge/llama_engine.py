"""Generation on llama.cpp: the quantized GGUF loaded once, LoRA adapters applied unmerged.

A float32 engine on the CPU is bound by reading every weight for every token (~540 MB for
SmolLM2-135M); llama.cpp reads the 4-bit weights and multiplies them against 8-bit activations,
several times faster on the same cores. Adapters stay separate GGUF LoRA files
(adapter_export.write_gguf): each is loaded once next to the base and applied as
`W x + (alpha / r) * B (A x)` while the graph runs, so choosing another adapter for the next
request swaps a pointer in the context and never touches the base weights.

This module only uses llama-cpp-python's low-level bindings (llama_cpp.llama_cpp, ctypes over
llama.h), imported from the checked build of llama_build.py. Prompts arrive as token ids: the
bridge tokenizes with the model's own tokenizer and chat template (generation.prompt_tokens), so
both engines see the same tokens.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import cpu
from .generation import Sampling  # the one set of sampling settings (generation.py needs no MLX to import)
from .protocol import BridgeError

# Room for the longest prompt plus --max-tokens that a notebook is expected to send; SmolLM2's
# KV cache costs ~23 KB per token at f16, so 4096 tokens take ~94 MB.
DEFAULT_CONTEXT = 4096

_init_lock = threading.Lock()
_backend_ready = False
_log_callback: Any = None  # kept referenced: llama.cpp calls it for as long as the process lives


def _bindings() -> Any:
    from .llama_build import import_llama_cpp

    return import_llama_cpp().llama_cpp


def _backend(ll: Any) -> None:
    """llama_backend_init once per process, with llama.cpp's chatter kept off stderr (errors pass)."""
    global _backend_ready, _log_callback
    with _init_lock:
        if _backend_ready:
            return

        def forward(level: int, text: Optional[bytes], _user: Any) -> None:
            # GGML_LOG_LEVEL_ERROR is 4; everything below it is load-time detail.
            if level == 4 and text:
                import sys

                sys.stderr.write("llama.cpp: " + text.decode("utf-8", "replace"))

        _log_callback = ll.llama_log_callback(forward)
        ll.llama_log_set(_log_callback, ctypes.c_void_p(0))
        ll.llama_backend_init()
        _backend_ready = True


@dataclass
class LoadedAdapter:
    name: str
    path: Path
    handle: Any
    mtime_ns: int
    load_ms: float


@dataclass
class Generated:
    text: str
    tokens: List[int] = field(default_factory=list)
    prompt_tokens: int = 0
    finish_reason: str = "length"
    prefill_s: float = 0.0
    decode_s: float = 0.0
    switch_ms: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        # The first token comes out of the prompt's pass; each later one costs one decode.
        steps = len(self.tokens) - 1
        return steps / self.decode_s if steps > 0 and self.decode_s > 0 else 0.0

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0


class LlamaEngine:
    """One GGUF base model and context on llama.cpp, with any number of LoRA adapters beside it.

    Not thread-safe: the bridge calls it from its one worker thread.
    """

    def __init__(self, gguf_path: Path, *, n_ctx: int = DEFAULT_CONTEXT, threads: Optional[int] = None):
        ll = _bindings()
        self.ll = ll
        _backend(ll)
        self.path = Path(gguf_path)
        self.threads = threads or cpu.usable_cores()
        started = time.perf_counter()
        model_params = ll.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model = ll.llama_model_load_from_file(str(self.path).encode(), model_params)
        if not model:
            raise BridgeError("model_load_failed", f"llama.cpp could not load {self.path}; check that it is a GGUF model file.")
        self.model = model
        self.vocab = ll.llama_model_get_vocab(model)
        self.n_vocab = int(ll.llama_vocab_n_tokens(self.vocab))
        context_params = ll.llama_context_default_params()
        context_params.n_ctx = n_ctx
        context_params.n_batch = min(n_ctx, 512)
        context_params.n_ubatch = min(n_ctx, 512)
        context_params.n_threads = self.threads
        context_params.n_threads_batch = self.threads
        context_params.no_perf = False
        ctx = ll.llama_init_from_model(model, context_params)
        if not ctx:
            ll.llama_model_free(model)
            raise BridgeError("model_load_failed", f"llama.cpp could not create a context of {n_ctx} tokens for {self.path}.")
        self.ctx = ctx
        self.n_ctx = int(ll.llama_n_ctx(ctx))
        self.n_batch = int(context_params.n_batch)
        self.load_seconds = time.perf_counter() - started
        self.adapters: Dict[str, LoadedAdapter] = {}
        self.active: Optional[str] = None
        self._piece = ctypes.create_string_buffer(256)

    # --- adapters -------------------------------------------------------------------------

    def load_adapter(self, name: str, path: Path) -> LoadedAdapter:
        """Loads (or reloads, when the file changed) a GGUF LoRA adapter next to the base."""
        path = Path(path)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise BridgeError("adapter_not_found", f"there is no GGUF adapter at {path}.") from None
        known = self.adapters.get(name)
        if known is not None and known.path == path and known.mtime_ns == mtime:
            return known
        started = time.perf_counter()
        handle = self.ll.llama_adapter_lora_init(self.model, str(path).encode())
        if not handle:
            raise BridgeError("bad_config", f"llama.cpp could not load the adapter {path}; it is not a LoRA adapter of this base model (llama.cpp's log above says why).")
        if known is not None:
            self._drop(known)
        loaded = LoadedAdapter(name, path, handle, mtime, (time.perf_counter() - started) * 1000)
        self.adapters[name] = loaded
        return loaded

    def _drop(self, adapter: LoadedAdapter) -> None:
        if self.active == adapter.name:
            self.use(None)
        self.ll.llama_adapter_lora_free(adapter.handle)

    def unload_adapter(self, name: str) -> None:
        adapter = self.adapters.pop(name, None)
        if adapter is not None:
            self._drop(adapter)

    def use(self, name: Optional[str], scale: float = 1.0) -> float:
        """Makes adapter `name` (None: the base alone) the one applied; returns milliseconds.

        `scale` multiplies the adapter's own alpha / r (1.0: exactly as trained).
        """
        started = time.perf_counter()
        if name is None:
            self.ll.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            adapter = self.adapters.get(name)
            if adapter is None:
                raise BridgeError("adapter_not_found", f"adapter {name!r} is not loaded in llama.cpp; loaded: {', '.join(self.adapters) or 'none'}.")
            handles = (self.ll.llama_adapter_lora_p_ctypes * 1)(adapter.handle)
            scales = (ctypes.c_float * 1)(scale)
            if self.ll.llama_set_adapters_lora(self.ctx, handles, 1, scales) != 0:
                raise BridgeError("bad_config", f"llama.cpp refused to apply adapter {name!r}.")
        self.active = name
        return (time.perf_counter() - started) * 1000

    # --- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> List[int]:
        """llama.cpp's own tokenizer (the bridge uses the model's Hugging Face tokenizer instead)."""
        data = text.encode("utf-8")
        room = len(data) + 8
        buffer = (self.ll.llama_token * room)()
        count = self.ll.llama_tokenize(self.vocab, data, len(data), buffer, room, False, special)
        return [int(t) for t in buffer[: max(count, 0)]]

    def piece(self, token: int) -> bytes:
        count = self.ll.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[: max(count, 0)]

    def is_end(self, token: int) -> bool:
        return bool(self.ll.llama_vocab_is_eog(self.vocab, token))

    # --- evaluation -------------------------------------------------------------------------

    def _reset(self) -> None:
        self.ll.llama_memory_clear(self.ll.llama_get_memory(self.ctx), True)

    def _decode(self, tokens: Sequence[int]) -> None:
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            array = (self.ll.llama_token * len(chunk))(*chunk)
            code = self.ll.llama_decode(self.ctx, self.ll.llama_batch_get_one(array, len(chunk)))
            if code != 0:
                raise BridgeError("generation_failed", f"llama.cpp could not evaluate the prompt (llama_decode returned {code}).")

    def _check_fits(self, prompt: Sequence[int], max_tokens: int) -> None:
        if not prompt:
            raise BridgeError("bad_request", "generate: the prompt is empty after tokenization.")
        if len(prompt) + max_tokens > self.n_ctx:
            raise BridgeError("bad_request", f"generate: the prompt has {len(prompt)} tokens and --max-tokens is {max_tokens}; together they must fit llama.cpp's context of {self.n_ctx} tokens.")
        bad = next((t for t in prompt if not 0 <= int(t) < self.n_vocab), None)
        if bad is not None:
            raise BridgeError("bad_request", f"generate: token id {bad} is outside the model's vocabulary of {self.n_vocab}.")

    def first_logits(self, prompt: Sequence[int], adapter: Optional[str] = None) -> Any:
        """The logits after the whole prompt with `adapter` (NumPy float32, one per vocabulary entry)."""
        import numpy as np

        self._check_fits(prompt, 1)
        if adapter != self.active:
            self.use(adapter)
        self._reset()
        self._decode(list(prompt))
        pointer = self.ll.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def _sampler(self, sampling: Sampling) -> Any:
        ll = self.ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if sampling.temp <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        # llama.cpp's default order: nucleus first, then temperature, then the draw.
        if 0.0 < sampling.top_p < 1.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(sampling.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(sampling.temp))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(sampling.seed & 0xFFFFFFFF))
        return chain

    def generate(
        self,
        prompt: Sequence[int],
        sampling: Sampling,
        *,
        adapter: Optional[str] = None,
        cancelled: Callable[[], bool] = lambda: False,
        on_text: Optional[Callable[[str], None]] = None,
    ) -> Generated:
        """Streams the answer to `prompt` (token ids) with `adapter` (None: the base model).

        Cancel is checked after every token; text is handed on in whole UTF-8 characters.
        """
        if sampling.max_tokens < 1:
            raise BridgeError("bad_request", f"generate: 'max_tokens' must be at least 1, got {sampling.max_tokens}.")
        prompt = [int(t) for t in prompt]
        self._check_fits(prompt, sampling.max_tokens)
        switch_ms = self.use(adapter) if adapter != self.active else 0.0
        sampler = self._sampler(sampling)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: List[str] = []
        result = Generated(text="", prompt_tokens=len(prompt), switch_ms=switch_ms)
        try:
            self._reset()
            started = time.perf_counter()
            self._decode(prompt)
            prefilled = time.perf_counter()
            result.prefill_s = prefilled - started
            for index in range(sampling.max_tokens):
                token = int(self.ll.llama_sampler_sample(sampler, self.ctx, -1))
                if self.is_end(token):
                    result.finish_reason = "stop"
                    break
                result.tokens.append(token)
                text = decoder.decode(self.piece(token))
                if text:
                    parts.append(text)
                    if on_text is not None:
                        on_text(text)
                if cancelled():
                    result.finish_reason = "cancelled"
                    break
                if index + 1 == sampling.max_tokens:
                    break
                self._decode([token])
            result.decode_s = time.perf_counter() - prefilled
        finally:
            self.ll.llama_sampler_free(sampler)
        tail = decoder.decode(b"", final=True)
        if tail:
            parts.append(tail)
            if on_text is not None:
                on_text(tail)
        result.text = "".join(parts)
        return result

    def generate_tokens(self, prompt: Sequence[int], max_tokens: int, adapter: Optional[str] = None) -> List[int]:
        """Greedy token ids (for checks and tests)."""
        return self.generate(prompt, Sampling(max_tokens=max_tokens), adapter=adapter).tokens

    def system_info(self) -> str:
        return self.ll.llama_print_system_info().decode("utf-8", "replace").strip()

    def close(self) -> None:
        # The context first: it may still point at an adapter.
        if getattr(self, "ctx", None):
            self.ll.llama_free(self.ctx)
            self.ctx = None
        for adapter in list(self.adapters.values()):
            self.ll.llama_adapter_lora_free(adapter.handle)
        self.adapters.clear()
        if getattr(self, "model", None):
            self.ll.llama_model_free(self.model)
            self.model = None
