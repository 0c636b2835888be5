"""The files of one %tune run around its training: which run directory it writes (a new one, or
the one --resume continues, whose trajectory options must match its start), and the adapter's
GGUF form written beside it when training ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from .files import read_json
from .options import TuneOptions, as_wire, trajectory_fields
from .protocol import BridgeError
from .runs import RunDir, check_run_name, default_run_name
from .world import World


def run_dir(options: TuneOptions, runs_root: Path) -> tuple[RunDir, Optional[int]]:
    if not options.resume:
        return RunDir(runs_root / check_run_name(options.name or default_run_name())), None
    if not options.name:
        raise BridgeError("bad_config", "--resume needs --name of the run to continue.")
    run = RunDir(runs_root / check_run_name(options.name))
    step = run.latest_checkpoint()
    if step is None:
        raise BridgeError("bad_config", f"run {options.name!r} has no checkpoint to resume from; start it again without --resume.")
    return run, step


def check_resume_matches(run: RunDir, params: Mapping[str, Any]) -> None:
    """Options that shape the trajectory must be the ones the run started with."""
    saved = (read_json(run.config) or {}).get("params")
    if not isinstance(saved, dict):
        return
    # A run saved before an option existed ran with its default.
    defaults = as_wire(TuneOptions())
    changed = [f for f in trajectory_fields(TuneOptions) if saved.get(f, defaults[f]) != params[f]]
    if changed:
        detail = ", ".join(f"{f} {saved.get(f)!r} -> {params[f]!r}" for f in changed)
        raise BridgeError("bad_config", f"--resume must use the settings the run started with ({detail}); pass the same flags or start a new run.")


def saved_params(options: TuneOptions, keys: List[str]) -> Dict[str, Any]:
    """config.json's params: the options with the keys as paths, and where the data came from."""
    data = options.data or {}
    sources = {role: (data.get(role) or {}).get("source") for role in ("train", "valid")}
    return {**as_wire(options), "keys": keys, "data": sources}


def open_run(options: TuneOptions, keys: List[str], runs_root: Path, world: World) -> tuple[RunDir, Optional[int]]:
    """The run directory and the checkpoint step to resume from; only rank 0 touches the files,
    and tells the others where the run starts."""
    run, resume_step = run_dir(options, runs_root) if world.is_main else (RunDir(runs_root / check_run_name(options.name or "rank")), None)
    if world.is_main and resume_step is None:
        run.reset()
    elif world.is_main:
        check_resume_matches(run, saved_params(options, keys))
    return run, world.broadcast_int(resume_step)


def write_gguf_beside(run_dir: Path) -> Dict[str, Any]:
    """The adapter also in llama.cpp's GGUF LoRA format, beside it (what %generate's llama.cpp
    engine and Ollama's ADAPTER load): {"gguf": path}, or {"gguf": None, "gguf_unavailable":
    why} for a base llama.cpp has no adapter layout for. The MLX adapter is saved either way."""
    from .adapter_export import write_gguf

    try:
        return {"gguf": str(write_gguf(run_dir))}
    except BridgeError as error:
        return {"gguf": None, "gguf_unavailable": error.message}
