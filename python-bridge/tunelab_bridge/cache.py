"""Where tunelab keeps what it computes once: imported models, downloaded wheels, measurements.

The rule is the kernel's (kernel/paths.ts CACHE_DIR), so both sides agree on one directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    explicit = os.environ.get("TUNELAB_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(base) / "tunelab").resolve()


def models_dir() -> Path:
    return cache_dir() / "models"


def wheels_dir() -> Path:
    return cache_dir() / "wheels"


def atomic_write_text(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of it (bridges may run side by side)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; cached files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or unreadable (a cache can always be rebuilt)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
