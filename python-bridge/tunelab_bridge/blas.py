"""Which BLAS MLX's CPU backend multiplies with, and making it the fast one.

The Linux `mlx-cpu` wheel bundles the netlib reference BLAS (5-7 GFLOP/s on sgemm). libmlx
binds `cblas_sgemm` and the LAPACK routines through the global symbol scope, so a library
preloaded into the process wins over the bundled one with identical results; cmeel-openblas
(installed in the bridge's venv) runs about 30x faster and makes a LoRA step about 9x faster.
A preload has to happen before the dynamic loader starts, hence the re-exec.

`python -m tunelab_bridge.blas [--json]` prints what this environment runs on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from .cache import atomic_write_text, cache_dir, read_json

# `reference` keeps the BLAS bundled with mlx-cpu (for comparisons); a path preloads that library.
ENV_CHOICE = "TUNELAB_BLAS"
GFORTRAN = "libgfortran.so.5"
_SGEMM_SIZE = 1024
# One BLAS thread per core unless the user chose otherwise. Measured on a quiet 2-core machine
# (the 200-step identity run): 2 threads 27 s, 1 thread 35-40 s. When something else wants the
# cores, OpenBLAS's spinning threads make each step 1.5-5x slower: OPENBLAS_NUM_THREADS=1 then wins.
THREADS_ENV = "OPENBLAS_NUM_THREADS"
DEFAULT_THREADS = str(os.cpu_count() or 1)
# After each call OpenBLAS's worker threads spin for a while before sleeping. Between MLX's BLAS
# calls the step runs other work on those cores (the fused head's threads, NumPy, MLX's own
# ops), and a spinning worker takes a core from it: with the shortest timeout OpenBLAS accepts
# (2^4 cycles; smaller values are raised to it) the fused head ran in 20 ms in a step instead of
# 26-27 ms, and a step of the identity run went from ~88 to ~79 ms (paired runs, 2 cores).
THREAD_TIMEOUT_ENV = "OPENBLAS_THREAD_TIMEOUT"
DEFAULT_THREAD_TIMEOUT = "4"
_MEASUREMENTS = "blas.json"


def openblas_library() -> Path | None:
    """The optimised BLAS this environment would preload, or None when there is none."""
    choice = os.environ.get(ENV_CHOICE, "")
    if choice and choice not in ("reference", "auto", "openblas"):
        path = Path(choice).expanduser()
        return path if path.is_file() else None
    for site in {sysconfig.get_paths()["platlib"], sysconfig.get_paths()["purelib"]}:
        candidate = Path(site) / "cmeel.prefix" / "lib" / "libopenblas.so.0"
        if candidate.is_file():
            return candidate
    return None


def gfortran_loadable() -> bool:
    try:
        ctypes.CDLL(GFORTRAN)
        return True
    except OSError:
        return False


def _preloaded(library: Path) -> bool:
    entries = os.environ.get("LD_PRELOAD", "").replace(":", " ").split()
    return any(Path(entry).resolve() == library.resolve() for entry in entries if entry)


def ensure_optimised_blas() -> None:
    """Re-executes this process with the optimised BLAS preloaded, when that is possible and not yet done.

    Call it first thing in a program's entry point, before anything imports mlx. It returns
    normally when nothing needs doing (macOS, TUNELAB_BLAS=reference, no OpenBLAS, no
    libgfortran, already preloaded); `blas_report()` then says why in its warning.
    """
    if not sys.platform.startswith("linux") or os.environ.get(ENV_CHOICE) == "reference":
        return
    library = openblas_library()
    if library is None or not gfortran_loadable():
        return
    if _preloaded(library):
        if THREADS_ENV not in os.environ:
            # Preloaded by someone else without a thread count: OpenBLAS already started its threads.
            try:
                ctypes.CDLL(str(library)).openblas_set_num_threads(int(DEFAULT_THREADS))
            except (AttributeError, OSError):
                pass
        return
    env = dict(os.environ)
    env.setdefault(THREADS_ENV, DEFAULT_THREADS)
    env.setdefault(THREAD_TIMEOUT_ENV, DEFAULT_THREAD_TIMEOUT)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    # sys.executable, not the typed argv[0]: a bare `python` resolved through PATH could lose the venv.
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _global_sgemm_provider() -> str | None:
    """The library that answers `cblas_sgemm` in the global scope: the one libmlx binds first."""
    try:
        symbol = ctypes.CDLL(None).cblas_sgemm
    except AttributeError:
        return None
    info = _DlInfo()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not libc.dladdr(ctypes.cast(symbol, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def _mapped_blas() -> str | None:
    """The BLAS libmlx brought in itself (after mlx is imported), read from the process's mappings."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/mlx_cpu.libs/libblas" in path or "/libblas.so" in path:
                    return path
    except OSError:
        pass
    return None


def _openblas_config(path: str) -> str | None:
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_config.restype = ctypes.c_char_p
        return lib.openblas_get_config().decode().strip()
    except (OSError, AttributeError):
        return None


def _fix_for_reference() -> str:
    if os.environ.get(ENV_CHOICE) == "reference":
        return f"unset {ENV_CHOICE} (it is set to 'reference')"
    choice = os.environ.get(ENV_CHOICE, "")
    if openblas_library() is None and choice not in ("", "auto", "openblas"):
        return f"point {ENV_CHOICE} at an existing libopenblas.so.0 or unset it ('{choice}' does not exist)"
    if openblas_library() is None:
        return "run `tunelab setup` to install cmeel-openblas into the bridge's environment"
    if not gfortran_loadable():
        return "install libgfortran5 (`sudo apt-get install -y libgfortran5`) so that OpenBLAS can load"
    return "start the bridge with `python -m tunelab_bridge` (it preloads OpenBLAS before MLX loads)"


def _measure_gflops() -> float:
    import mlx.core as mx

    n = _SGEMM_SIZE
    with mx.stream(mx.cpu):
        a = mx.random.normal((n, n), key=mx.random.key(0))
        b = mx.random.normal((n, n), key=mx.random.key(1))
        mx.eval(a, b, a @ b)  # warm-up: thread pools, page faults
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            mx.eval(a @ b)
            best = min(best, time.perf_counter() - started)
    return round(2 * n**3 / best / 1e9, 1)


def _cached_gflops(library: str) -> float:
    """sgemm rate of this library on this machine, measured once (keyed by path, size and mtime)."""
    path = cache_dir() / _MEASUREMENTS
    try:
        stat = os.stat(library)
        key = f"{library}|{stat.st_size}|{int(stat.st_mtime)}|{os.cpu_count()}"
    except OSError:
        key = f"{library}|{os.cpu_count()}"
    known = read_json(path)
    known = known if isinstance(known, dict) else {}
    if isinstance(known.get(key), dict) and isinstance(known[key].get("gflops"), (int, float)):
        return float(known[key]["gflops"])
    gflops = _measure_gflops()
    known[key] = {"gflops": gflops, "size": _SGEMM_SIZE, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        atomic_write_text(path, json.dumps(known, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    return gflops


def blas_report() -> dict[str, Any]:
    """{"name", "path", "gflops", "reference", "warning"}: what MLX's CPU matmuls run on, and how fast."""
    import mlx.core as mx

    if sys.platform == "darwin":
        name, path, reference = "Accelerate", "/System/Library/Frameworks/Accelerate.framework", False
    else:
        provider = _global_sgemm_provider()
        if provider is None:
            mx.eval(mx.zeros((1,)))  # make sure the CPU backend (and its BLAS) is loaded
            provider = _global_sgemm_provider() or _mapped_blas()
        config = _openblas_config(provider) if provider else None
        if config:
            name, reference = config.split(" DYNAMIC_ARCH")[0].split(" NO_")[0], False
            name = name if name.startswith("OpenBLAS") else f"OpenBLAS ({name})"
        elif provider and "mlx_cpu.libs" in provider:
            name, reference = "reference BLAS (netlib, bundled with mlx-cpu)", True
        else:
            name, reference = (Path(provider).name if provider else "unknown"), provider is None
        path = provider or ""
    warning = None
    if reference:
        warning = (
            f"MLX is running on the slow reference BLAS (about 9x slower LoRA training than OpenBLAS); "
            f"to fix it, {_fix_for_reference()}."
        )
    gflops = _cached_gflops(path) if path else None
    return {"name": name, "path": path, "gflops": gflops, "reference": reference, "warning": warning, "threads": _threads(path) if path else None}


def _threads(path: str) -> int | None:
    """OpenBLAS's thread count in this process (None for a BLAS that has no such setting)."""
    try:
        return int(ctypes.CDLL(path).openblas_get_num_threads())
    except (AttributeError, OSError):
        return None


def _main(argv: list[str]) -> int:
    ensure_optimised_blas()
    report = blas_report()
    if "--json" in argv:
        print(json.dumps(report))
    else:
        print(f"BLAS: {report['name']}")
        print(f"path: {report['path']}")
        print(f"sgemm {_SGEMM_SIZE}x{_SGEMM_SIZE}: {report['gflops']} GFLOP/s")
        if report["warning"]:
            print(f"warning: {report['warning']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
