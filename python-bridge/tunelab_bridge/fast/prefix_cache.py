"""Frozen-prefix activation cache.

When the adapters sit in the last blocks only, the blocks below see frozen weights and the same
tokens at every step, so their output for a training example never changes. It is computed once
per example and the adapted blocks train on it. Entries are keyed by the exact token sequence,
so a row whose tokens differ in any way is never served a stale activation. Causal attention
makes a row's activations independent of whatever padding or neighbours it was computed with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import mlx.core as mx
import numpy as np

from .blocks import BlockRunner

ProgressCallback = Callable[[int, int], None]

# Examples per precompute batch are bounded by padded tokens, so a long example does not make a
# batch of short ones explode in size.
PRECOMPUTE_TOKENS = 4096
PRECOMPUTE_ROWS = 16


@dataclass
class PrefixCacheStats:
    examples: int = 0
    cached: int = 0
    skipped_over_budget: int = 0
    bytes: int = 0
    seconds: float = 0.0
    hits: int = 0
    misses: int = 0

    def as_dict(self) -> Dict[str, float]:
        return dict(self.__dict__)



class PrefixCache:
    def __init__(self, runner: BlockRunner, stop_block: int, budget_bytes: int):
        self.runner = runner
        self.stop_block = stop_block
        self.budget_bytes = budget_bytes
        self.stats = PrefixCacheStats()
        self._entries: Dict[bytes, mx.array] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _forward(self, rows: List[np.ndarray]) -> List[mx.array]:
        """Frozen prefix for several token rows in one padded batch; one compact array per row."""
        width = max(len(r) for r in rows)
        grid = np.zeros((len(rows), width), dtype=np.int32)
        for i, r in enumerate(rows):
            grid[i, : len(r)] = r
        h = self.runner.run_blocks(self.runner.anatomy.embed_tokens(mx.array(grid)), 0, self.stop_block)
        h = mx.stop_gradient(h)
        # `+ 0` gives each row its own buffer, so the padded batch buffer is freed after eval.
        out = [h[i, : len(r)] + 0 for i, r in enumerate(rows)]
        mx.eval(out)
        return out

    def _store(self, key: bytes, value: mx.array) -> bool:
        if key in self._entries:
            return True
        if self.stats.bytes + value.nbytes > self.budget_bytes:
            self.stats.skipped_over_budget += 1
            return False
        self._entries[key] = value
        self.stats.bytes += value.nbytes
        self.stats.cached += 1
        return True

    def precompute(self, sequences: Iterable[Sequence[int]], progress: Optional[ProgressCallback] = None) -> PrefixCacheStats:
        """Cache the prefix output of every distinct sequence that fits the budget (shortest first)."""
        started = time.perf_counter()
        unique: Dict[bytes, np.ndarray] = {}
        for s in sequences:
            arr = np.asarray(s, dtype=np.int32)
            unique.setdefault(arr.tobytes(), arr)
        todo = sorted(unique.items(), key=lambda kv: len(kv[1]))
        self.stats.examples = len(todo)
        if progress:
            progress(0, len(todo))
        i = 0
        while i < len(todo):
            chunk = [todo[i]]
            while (
                i + len(chunk) < len(todo)
                and len(chunk) < PRECOMPUTE_ROWS
                and (len(chunk) + 1) * len(todo[i + len(chunk)][1]) <= PRECOMPUTE_TOKENS
            ):
                chunk.append(todo[i + len(chunk)])
            stored = [self._store(key, value) for (key, _), value in zip(chunk, self._forward([row for _, row in chunk]))]
            i += len(chunk)
            if not all(stored):
                # Shortest first: once one does not fit, no later (longer) one does either.
                self.stats.skipped_over_budget += len(todo) - i
                i = len(todo)
            if progress:
                progress(i, len(todo))
        self.stats.seconds += time.perf_counter() - started
        return self.stats

    def hidden(self, source: np.ndarray, lengths: np.ndarray, width: int) -> mx.array:
        """(B, width, D) prefix output for the rows of a batch; rows not cached are computed now
        (and kept if the budget allows)."""
        keys = [source[b, : int(lengths[b])].tobytes() for b in range(source.shape[0])]
        missing = [b for b, k in enumerate(keys) if k not in self._entries]
        self.stats.hits += len(keys) - len(missing)
        self.stats.misses += len(missing)
        fresh: Dict[int, mx.array] = {}
        if missing:
            rows = [source[b, : int(lengths[b])] for b in missing]
            for b, value in zip(missing, self._forward(rows)):
                fresh[b] = value
                self._store(keys[b], value)
        parts = []
        for b, k in enumerate(keys):
            h = fresh[b] if b in fresh else self._entries[k]
            n = min(h.shape[0], width)
            h = h[:n]
            if n < width:
                h = mx.concatenate([h, mx.zeros((width - n, h.shape[-1]), dtype=h.dtype)], axis=0)
            parts.append(h)
        return mx.stack(parts)
