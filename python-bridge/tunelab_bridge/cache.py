"""Where tunelab keeps what it computes once: imported models, downloaded wheels, measurements.

The rule is the kernel's (kernel/paths.ts CACHE_DIR), so both sides agree on one directory.
"""

from __future__ import annotations

import os
from pathlib import Path


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
