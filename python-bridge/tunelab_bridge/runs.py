"""Run directories on disk: one folder per `tune` run, every file written atomically.

    runs/<name>/config.json            full tune params + model info
    runs/<name>/metrics.jsonl          one JSON line per report, appended and flushed
    runs/<name>/adapters.safetensors   mlx-lm's adapter format, with adapter_config.json
    runs/<name>/result.json            the TuneResult of the last attempt (status, losses, ...)
    runs/<name>/checkpoints/<step>_{adapters,optimizer}.safetensors + <step>_state.json

No MLX here; files are written atomically through files.py.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .files import atomic_write_bytes, read_json
from .protocol import BridgeError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_run_name() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S", time.localtime())


def check_run_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise BridgeError("bad_config", f"run name {name!r} must be letters, digits, '.', '_' or '-' (at most 128, not starting with a symbol).")
    return name


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters.safetensors"

    @property
    def adapter_config(self) -> Path:
        return self.root / "adapter_config.json"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint_files(self, step: int) -> tuple[Path, Path, Path]:
        stem = f"{step:07d}"
        return (
            self.checkpoints / f"{stem}_adapters.safetensors",
            self.checkpoints / f"{stem}_optimizer.safetensors",
            self.checkpoints / f"{stem}_state.json",
        )

    def latest_checkpoint(self) -> int | None:
        """The newest step whose three checkpoint files are all present (state.json is written last)."""
        if not self.checkpoints.is_dir():
            return None
        steps = []
        for path in self.checkpoints.glob("*_state.json"):
            try:
                step = int(path.name.split("_", 1)[0])
            except ValueError:
                continue
            if all(p.exists() for p in self.checkpoint_files(step)):
                steps.append(step)
        return max(steps) if steps else None

    def reset(self) -> None:
        """Start the run afresh: a re-executed notebook cell replaces its earlier run."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)


class MetricsLog:
    """metrics.jsonl, appended and flushed per line so a crash loses at most the line in flight."""

    def __init__(self, path: Path, keep_through_step: int | None = None):
        self.path = path
        if keep_through_step is not None and path.exists():
            # Resuming from a checkpoint: lines after it describe steps that will be run again.
            kept = [line for line in _lines(path) if _step_of(line) <= keep_through_step]
            atomic_write_bytes(path, "".join(kept).encode("utf-8"))
        self._handle = open(path, "a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._handle.write(json.dumps(dict(record), default=str) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _lines(path: Path) -> Iterable[str]:
    with open(path, encoding="utf-8") as handle:
        return [line if line.endswith("\n") else line + "\n" for line in handle if line.strip()]


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0



def run_info(run: RunDir) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": run.name,
        "path": str(run.root),
        "has_adapter": run.adapters.exists(),
        "status": None,
        "steps": None,
        "iters": None,
        "model": None,
        "last_loss": None,
        "modified": run.root.stat().st_mtime if run.root.exists() else None,
    }
    result = read_json(run.result)
    if isinstance(result, dict):
        info.update({k: result.get(k) for k in ("status", "steps", "iters", "last_loss")})
        model = result.get("model")
        info["model"] = model.get("name") if isinstance(model, dict) else model
    if info["status"] is None and run.config.exists():
        info["status"] = "incomplete"
    return info


def list_runs(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / "config.json").exists()]
    return sorted((run_info(r) for r in runs), key=lambda r: r["modified"] or 0, reverse=True)
