"""The group of processes a run trains in: one (the usual case) or the ranks `mlx.launch` started
(distributed.py), with MLX's own collectives (`mx.distributed`) between them.

Data parallelism as mlx-lm's trainer does it (each global batch split across the ranks, gradients
summed, every rank applying the same update, rank 0 alone reporting and saving), with one
difference: the gradients are averaged by token count, not by rank. Each rank's loss is the mean
over its own tokens; weighting each rank's gradient by its token count makes the update exactly
the one a single process would make over the whole batch, whatever the ranks' shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class World:
    rank: int = 0
    size: int = 1
    group: Optional[Any] = None  # mx.distributed.Group; None for a single process

    @staticmethod
    def init(backend: str) -> "World":
        import mlx.core as mx

        group = mx.distributed.init(strict=True, backend=backend)
        return World(group.rank(), group.size(), group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> List[T]:
        """This rank's share of a global batch (rank r takes items r, r + size, ...)."""
        return list(items)[self.rank :: self.size]

    def all_sum(self, x: Any) -> Any:
        import mlx.core as mx

        return mx.distributed.all_sum(x, group=self.group, stream=mx.cpu)

    def reduce(self, loss: Any, ntoks: Any, grads: Any) -> Tuple[Any, Any, Any]:
        """(global loss, global token count, global gradient) from this rank's, weighted by tokens."""
        if self.size == 1:
            return loss, ntoks, grads
        import mlx.core as mx
        from mlx.utils import tree_map

        weight = ntoks.astype(mx.float32)
        total = self.all_sum(weight)
        summed_loss = self.all_sum(loss.astype(mx.float32) * weight) / total
        summed_grads = tree_map(lambda g: self.all_sum(g * weight.astype(g.dtype)) / total.astype(g.dtype), grads)
        return summed_loss, total.astype(ntoks.dtype), summed_grads

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a cancel seen by one stops all at one step)."""
        if self.size == 1:
            return flag
        import mlx.core as mx

        return bool(self.all_sum(mx.array(1.0 if flag else 0.0)).item() > 0)

    def broadcast(self, tree: Any) -> Any:
        """Rank 0's values of a tree of arrays on every rank (a resumed checkpoint, on hosts that
        cannot read rank 0's files)."""
        if self.size == 1:
            return tree
        import mlx.core as mx
        from mlx.utils import tree_map

        return tree_map(lambda x: self.all_sum(x if self.is_main else mx.zeros_like(x)), tree)

    def broadcast_int(self, value: Optional[int]) -> Optional[int]:
        """Rank 0's integer (or None) on every rank."""
        if self.size == 1:
            return value
        import mlx.core as mx

        sent = mx.array(-1 if value is None else value, dtype=mx.int32) if self.is_main else mx.array(0, dtype=mx.int32)
        got = int(self.all_sum(sent).item())
        return None if got < 0 else got


SINGLE = World()
