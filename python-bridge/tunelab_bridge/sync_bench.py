"""What one data-parallel step costs to synchronise, measured: the bytes of a model's LoRA
gradients and of its full gradients, each all-reduced over the group (mx.distributed.all_sum, the
collective mlx-lm's trainer uses), timed. Runs in every rank (rank.py's "sync" task); the bridge
turns it into `bench.sync_cost`'s result, and `%sync_cost` compares it with the write-up's claim.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Dict, Mapping

from .protocol import BridgeError

# The write-up's claim: syncing a 10B model's gradients takes 26 minutes at 0.026 GB/s (home
# internet) and 22 ms on NVLink; its bytes are 10B float32 gradients.
CLAIM = {"parameters": 10e9, "bytes": 10e9 * 4, "home_gbps": 0.026, "home_seconds": 26 * 60, "nvlink_seconds": 0.022}


def parameters(params: Mapping[str, Any]) -> Dict[str, Any]:
    from .options import SyncCostOptions, as_wire, parse

    return as_wire(parse(SyncCostOptions, "bench.sync_cost", params))


def _time_all_sum(world: Any, count: int, reps: int) -> float:
    """Median seconds of one all_sum of `count` float32 values over the group (after a warm-up)."""
    import mlx.core as mx

    buffer = mx.ones((count,), dtype=mx.float32)
    mx.eval(buffer)
    mx.eval(world.all_sum(buffer))
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        mx.eval(world.all_sum(buffer))
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(config: Mapping[str, Any], world: Any) -> Dict[str, Any]:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from .models import ModelStore

    if world.size < 2:
        raise BridgeError("bad_config", "the sync cost needs at least 2 processes.")
    loaded = ModelStore().ensure(config["model_path"], lambda _detail: None)
    model = loaded.model
    full = sum(v.size for _, v in tree_flatten(model.parameters()))
    model.freeze()
    linear_to_lora_layers(model, config["layers"], {"rank": config["rank"], "scale": 20.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]})
    lora = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    mx.eval(model.parameters())
    out: Dict[str, Any] = {"ranks": world.size, "model": loaded.info.get("name"), "claim": CLAIM}
    for name, count in (("lora", lora), ("full", full)):
        seconds = _time_all_sum(world, int(count), int(config["reps"]))
        out[name] = {"parameters": int(count), "bytes": int(count) * 4, "seconds": seconds, "gbps": int(count) * 4 / seconds / 1e9}
    return out
