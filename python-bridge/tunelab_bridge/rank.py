"""One rank of a distributed `tune`, as `mlx.launch` starts it: `python -m tunelab_bridge.rank`.

Everything a rank needs comes on its standard input, which mlx.launch broadcasts to every rank
(so no rank needs the bridge's files): the first line is the run as JSON (the tune options with
their data text, the model's path, where runs go); a later line `cancel` asks for a stop at the
next step boundary, agreed by all ranks at once (world.any). Rank 0 reports on standard output,
one line per event, which mlx.launch passes to the bridge:

    TUNELAB_RANK_EVENT {"event": "progress", "data": {...}}
    TUNELAB_RANK_RESULT {...TuneResult...}
    TUNELAB_RANK_ERROR {"code": ..., "message": ...}
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

EVENT, RESULT, ERROR = "TUNELAB_RANK_EVENT", "TUNELAB_RANK_RESULT", "TUNELAB_RANK_ERROR"


def _say(kind: str, body: Any) -> None:
    from .protocol import finite_json

    sys.stdout.write(f"{kind} {json.dumps(finite_json(body), allow_nan=False, default=str)}\n")
    sys.stdout.flush()


def _watch_for_cancel() -> threading.Event:
    cancelled = threading.Event()

    def read() -> None:
        for line in sys.stdin:
            if line.strip() == "cancel":
                cancelled.set()

    threading.Thread(target=read, name="tunelab-rank-stdin", daemon=True).start()
    return cancelled


def _tune(config: Mapping[str, Any], world: Any, emit: Callable[[str, Mapping[str, Any]], None], cancelled: Callable[[], bool]) -> Mapping[str, Any]:
    from .adapters import AdapterManager
    from .models import ModelStore
    from .options import TuneOptions, parse
    from .training import TuneContext, tune

    options = parse(TuneOptions, "tune", config["options"])
    runs_root = Path(config["runs_dir"])
    loaded = ModelStore().ensure(config["model_path"], lambda _detail: None)
    context = TuneContext(emit=emit, cancelled=cancelled, runs_root=runs_root, generate=lambda _prompt: "", blas=config.get("blas"))
    return tune(loaded, AdapterManager(loaded.model, runs_root), options, context, world)


def _sync(config: Mapping[str, Any], world: Any, emit: Callable[[str, Mapping[str, Any]], None], cancelled: Callable[[], bool]) -> Mapping[str, Any]:
    from .sync_bench import measure

    return measure(config, world)


TASKS = {"tune": _tune, "sync": _sync}


def _run(config: Mapping[str, Any]) -> int:
    from .protocol import BridgeError
    from .world import World

    world = World.init(config["backend"])
    cancelled = _watch_for_cancel()

    def emit(event: str, data: Mapping[str, Any]) -> None:
        if world.is_main:
            _say(EVENT, {"event": event, "data": dict(data)})

    try:
        result = TASKS[config.get("task", "tune")](config, world, emit, cancelled.is_set)
    except BridgeError as error:
        if world.is_main:
            _say(ERROR, error.body())
        return 2
    if world.is_main:
        _say(RESULT, result)
    return 0


def main() -> int:
    from .startup import settle_native_code

    first = sys.stdin.readline()
    try:
        config = json.loads(first)
    except ValueError:
        print("tunelab rank: the first line of standard input must be the run's JSON.", file=sys.stderr)
        return 2
    settle_native_code()
    from .allocator import keep_freed_memory

    keep_freed_memory()
    try:
        return _run(config)
    except Exception:  # noqa: BLE001 - the bridge shows this rank's traceback under its sentence
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    import os

    os._exit(code)
