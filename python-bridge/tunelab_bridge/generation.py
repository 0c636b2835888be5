"""Sampling from the resident model (with whatever adapter is active) through mlx-lm."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from .protocol import BridgeError


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 200
    temp: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    system: str | None = None


def prompt_tokens(tokenizer: Any, prompt: str, system: str | None) -> list[int]:
    """The prompt as the model expects it: through its chat template when it has one."""
    if getattr(tokenizer, "chat_template", None) is None:
        return list(tokenizer.encode(prompt))
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return [int(t) for t in tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)]


def generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    sampling: Sampling,
    *,
    cancelled: Callable[[], bool] = lambda: False,
    on_text: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    if sampling.max_tokens < 1:
        raise BridgeError("bad_request", f"generate: 'max_tokens' must be at least 1, got {sampling.max_tokens}.")
    tokens = prompt_tokens(tokenizer, prompt, sampling.system)
    mx.random.seed(sampling.seed)
    # top_p 1.0 keeps every token; mlx-lm treats 0 and 1 alike as "off".
    sampler = make_sampler(temp=sampling.temp, top_p=sampling.top_p if 0.0 < sampling.top_p < 1.0 else 0.0)
    model.eval()
    started = time.perf_counter()
    parts: list[str] = []
    finish_reason = "length"
    generated = 0
    tokens_per_s = 0.0
    prompt_tps = 0.0
    for response in stream_generate(model, tokenizer, mx.array(tokens), max_tokens=sampling.max_tokens, sampler=sampler):
        generated = response.generation_tokens
        tokens_per_s = response.generation_tps
        prompt_tps = response.prompt_tps
        if response.text:
            parts.append(response.text)
            if on_text is not None:
                on_text(response.text)
        if response.finish_reason is not None:
            finish_reason = response.finish_reason
        if cancelled():
            finish_reason = "cancelled"
            break
    return {
        "text": "".join(parts),
        "tokens": int(generated),
        "prompt_tokens": len(tokens),
        "tokens_per_s": round(float(tokens_per_s), 3),
        "prompt_tps": round(float(prompt_tps), 3),
        "finish_reason": finish_reason,
        "seconds": round(time.perf_counter() - started, 4),
    }
