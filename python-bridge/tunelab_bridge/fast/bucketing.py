"""The shape of one training batch as the fast path runs it.

mlx-lm pads every batch to one plus the next multiple of 32 tokens and computes the loss over
the padded grid. Attention is causal and padding sits at the end, so positions past a row's
last token never influence the positions the loss counts: the batch can be cut to its longest
row. For a compiled step, widths and loss-position counts are rounded up to a multiple
(buckets) so it sees few distinct shapes (the extra positions carry zero loss weight); the
uncompiled step takes exact sizes (bucket 1), since every padded position costs arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BUCKET = 8  # for compiled steps


def round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


@dataclass
class BatchLayout:
    source: np.ndarray  # (B, W) the batch as iterate_batches made it (rows keyed by their tokens)
    tokens: np.ndarray  # (B, width) input tokens, zero beyond each row's end
    lengths: np.ndarray  # (B,) real tokens per row (after mlx-lm's truncation)
    width: int  # positions run through the blocks
    tail_start: int  # first position the last block computes (0: all of them)
    positions: np.ndarray  # (N,) flat indices b * (width - tail_start) + j - tail_start whose logits are computed
    targets: np.ndarray  # (N,) next-token targets at those positions
    weights: np.ndarray  # (N,) 1.0 where the loss counts, 0.0 for bucket filler
    ntoks: int  # positions the loss counts (mlx-lm's ntoks)


def layout(batch: np.ndarray, lengths: np.ndarray, *, trim: bool, loss_positions_only: bool, tail_queries: bool = False, bucket: int = BUCKET) -> BatchLayout:
    """Lay out an `iterate_batches` batch: `batch` (B, W) tokens, `lengths` (B, 2) [offset, length];
    with `trim`, sizes are rounded up to multiples of `bucket`."""
    batch = np.asarray(batch, dtype=np.int32)
    offsets = np.asarray(lengths, dtype=np.int64)[:, 0]
    ends = np.asarray(lengths, dtype=np.int64)[:, 1]
    rows, full_width = batch.shape
    inputs_width = full_width - 1  # mlx-lm trains on batch[:, :-1] -> batch[:, 1:]

    # mlx-lm's default_loss mask: target index j counts when offset <= j + 1 <= length.
    step = np.arange(1, inputs_width + 1)[None, :]
    mask = (step >= offsets[:, None]) & (step <= ends[:, None])
    ntoks = int(mask.sum())

    needed = int(min(ends.max(initial=1), inputs_width))
    width = round_up(needed, bucket) if trim else inputs_width
    tokens = np.zeros((rows, width + 1), dtype=np.int32)
    copy = min(width + 1, full_width)
    tokens[:, :copy] = batch[:, :copy]
    padded_mask = np.zeros((rows, width), dtype=bool)
    keep = min(width, inputs_width)
    padded_mask[:, :keep] = mask[:, :keep]

    tail_start = 0
    if loss_positions_only:
        b, j = np.nonzero(padded_mask)
        count = len(b)
        if tail_queries and count:
            first = int(j.min())
            tail_start = (first // bucket) * bucket if trim else first
        span = width - tail_start
        total = round_up(count, bucket) if trim else max(count, 1)
        positions = np.zeros(total, dtype=np.int32)
        targets = np.zeros(total, dtype=np.int32)
        weights = np.zeros(total, dtype=np.float32)
        positions[:count] = b * span + (j - tail_start)
        targets[:count] = tokens[b, j + 1]
        weights[:count] = 1.0
    else:
        positions = np.arange(rows * width, dtype=np.int32)
        targets = tokens[:, 1:].reshape(-1).astype(np.int32)
        weights = padded_mask.reshape(-1).astype(np.float32)

    return BatchLayout(
        source=batch,
        tokens=tokens[:, :width],
        lengths=np.minimum(ends, full_width).astype(np.int64),
        width=width,
        tail_start=tail_start,
        positions=positions,
        targets=targets,
        weights=weights,
        ntoks=ntoks,
    )
