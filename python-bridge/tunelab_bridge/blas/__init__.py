"""The BLAS MLX's CPU backend multiplies with: chosen per CPU, checked before use, reported.

`activate()` runs first thing in the bridge's entry point, before anything imports MLX: it
picks the fastest library that passed its check on this CPU (choice.py) and loads it with
RTLD_GLOBAL, so libmlx binds its BLAS symbols to it. No re-exec and no LD_PRELOAD: the process
that checked is the process that runs, an emulator included. `report()` says what was chosen,
how it was built, how fast it measured, and what failed, for `%tune`'s header and doctor.

`python -m tunelab_bridge.blas [--json] [--recheck] [--cached]` prints the same.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Dict, Optional

from .. import cpu
from .candidates import ENV_CHOICE, REFERENCE
from .check import openblas_settings, sgemm_provider
from .choice import Choice, choose

THREADS_ENV = "OPENBLAS_NUM_THREADS"
# After each call OpenBLAS's worker threads spin for a while before sleeping. Between MLX's BLAS
# calls the step runs other work on those cores (the fused head's threads, NumPy, MLX's own
# ops), and a spinning worker takes a core from it: with the shortest timeout OpenBLAS accepts
# (2^4 cycles) the fused head ran in 20 ms in a step instead of 26-27 ms (paired runs, 2 cores).
THREAD_TIMEOUT_ENV = "OPENBLAS_THREAD_TIMEOUT"
DEFAULT_THREAD_TIMEOUT = "4"

_active: Optional[Dict[str, Any]] = None
_handle: Optional[ctypes.CDLL] = None


def thread_settings() -> None:
    """One BLAS thread per usable core (measured on a quiet 2-core machine, 200 identity steps:
    2 threads 27 s, 1 thread 35-40 s), unless the user chose; set before any BLAS loads."""
    os.environ.setdefault(THREADS_ENV, str(cpu.usable_cores()))
    os.environ.setdefault(THREAD_TIMEOUT_ENV, DEFAULT_THREAD_TIMEOUT)


def activate(recheck: bool = False) -> Dict[str, Any]:
    """Chooses and loads the BLAS (Linux); returns report(). Must run before MLX is imported."""
    global _active, _handle
    if _active is not None and not recheck:
        return _active
    if "mlx.core" in sys.modules:
        raise RuntimeError("the BLAS must be chosen before MLX is imported (call tunelab_bridge.blas.activate() first)")
    if not sys.platform.startswith("linux"):
        _active = _platform_report()
        return _active
    thread_settings()
    choice = choose(recheck)
    if choice.chosen.candidate.path:
        _handle = ctypes.CDLL(choice.chosen.candidate.path, mode=ctypes.RTLD_GLOBAL)
    _active = _choice_report(choice)
    return _active


def report() -> Dict[str, Any]:
    """What MLX multiplies with in this process (see activate)."""
    if _active is not None:
        return _active
    if not sys.platform.startswith("linux"):
        return _platform_report()
    # Not activated (a test, a script that imported MLX itself): say what is bound, unmeasured.
    bound = sgemm_provider()
    settings = openblas_settings(bound)
    reference = not settings
    return {
        "name": _library_name(settings) if settings else "reference BLAS (netlib, bundled with mlx-cpu)",
        "library": REFERENCE if reference else "unchecked",
        "origin": bound or "",
        "path": bound or "",
        "build": _build(settings),
        "core": settings.get("core"),
        "gflops": None,
        "threads": settings.get("threads"),
        "reference": reference,
        "warning": "MLX was imported before tunelab chose its BLAS, so this BLAS was not checked on this CPU." if not reference else _reference_warning(),
        "cpu": cpu.identity().as_dict(),
        "candidates": [],
    }


def _platform_report() -> Dict[str, Any]:
    name = "Accelerate" if sys.platform == "darwin" else "the platform's BLAS"
    return {"name": name, "library": name, "origin": "the operating system", "path": "", "build": None, "core": None, "gflops": None, "threads": None,
            "reference": False, "warning": None, "cpu": cpu.identity().as_dict(), "candidates": []}


def _library_name(settings: Dict[str, Any]) -> str:
    config = settings.get("config") or ""
    words = config.split()
    return " ".join(words[:2]) if words[:1] == ["OpenBLAS"] else (config or "OpenBLAS")


def _build(settings: Dict[str, Any]) -> Optional[str]:
    """'DYNAMIC_ARCH' (kernels picked at run time) or '<core> only' (built for one CPU family)."""
    config = settings.get("config")
    if not config:
        return None
    if "DYNAMIC_ARCH" in config.split():
        return "DYNAMIC_ARCH"
    return f"{settings.get('core') or 'one CPU'} only"


def _reference_warning() -> str:
    return (
        "MLX is running on the slow reference BLAS (about 9x slower LoRA training than OpenBLAS); "
        "run `tunelab doctor` to see why each faster library was not used"
        + (f", or unset {ENV_CHOICE} (it is set to 'reference')" if os.environ.get(ENV_CHOICE) == REFERENCE else "")
        + "."
    )


def _choice_report(choice: Choice) -> Dict[str, Any]:
    chosen = choice.chosen
    measured = chosen.measured
    reference = chosen.candidate.name == REFERENCE
    failed = None if chosen.ok else f"Even MLX's bundled BLAS failed its check on this CPU ({chosen.reason}); MLX may not run here."
    warnings = [w for w in (choice.warning, failed, _reference_warning() if reference else None) if w]
    return {
        "name": "reference BLAS (netlib, bundled with mlx-cpu)" if reference else _library_name(measured),
        "library": chosen.candidate.name,
        "origin": chosen.candidate.origin,
        "path": chosen.candidate.path or measured.get("bound") or "",
        "build": _build(measured),
        "core": measured.get("core"),
        "gflops": measured.get("gflops"),
        "size": measured.get("size"),
        "threads": measured.get("threads"),
        "reference": reference,
        "warning": " ".join(warnings) or None,
        "cpu": cpu.identity().as_dict(),
        "checked_at": choice.checked_at,
        "cached": choice.cached,
        "candidates": [c.as_dict(c is chosen) for c in choice.checked],
    }
