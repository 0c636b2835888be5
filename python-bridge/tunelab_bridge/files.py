"""Writing files that matter (run directories, checkpoints, caches) so that no reader, and no
crash, ever sees half of one: write a temporary file beside it, fsync it, rename it into place,
fsync the directory. Reading JSON back the one way every caller needs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .protocol import finite_json


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some file systems do not open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it; after a crash, one of the two."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; runs and caches are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> None:
    """JSON without NaN or infinities (null instead: JSON has no such numbers), one per file."""
    atomic_write_text(path, json.dumps(finite_json(value), indent=2, allow_nan=False, sort_keys=False, default=str) + "\n")


def save_arrays(path: Path, arrays: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """mx.save_safetensors, atomically (the temporary name keeps the suffix MLX insists on)."""
    import mlx.core as mx

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.safetensors")
    try:
        mx.save_safetensors(str(tmp), dict(arrays), metadata=dict(metadata or {}))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def replace_directory(built: Path, target: Path) -> None:
    """Puts the finished directory `built` (on the same file system) at `target` by renames: a reader
    finds the old directory, the new one or, between the two renames, none; never half of one. An
    old one is renamed aside, then removed."""
    stale = None
    if target.exists():
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        os.replace(target, stale)
    os.replace(built, target)
    _fsync_directory(target.parent)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
