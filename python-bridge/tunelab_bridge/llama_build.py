"""llama.cpp, the CPU generation engine, compiled once from llama-cpp-python's PyPI sdist.

PyPI has no Linux wheel of llama-cpp-python, so set-up builds one (`python -m
tunelab_bridge.llama_build --build`): the pinned sdist, verified by its hash, compiled with the
system's cmake, ninja and compilers through scikit-build-core (its version pinned by
llama-cpp-build-constraints.txt). The wheel is unpacked into the tunelab cache under a key of
everything that changes the binary: the version, the CMake flags, the compilers and, because the
CPU backend is compiled for this CPU's instruction sets, the CPU's fingerprint (cpu.py). The
bridge never installs it into its venv: a venv or home directory shared between machines then
never hands a build to a CPU it was not made for; each CPU gets (and checks) its own.

Why one build per CPU rather than a portable build with every CPU variant (GGML_BACKEND_DL +
GGML_CPU_ALL_VARIANTS): on x86-64 that compiles the CPU backend 14 times. Measured on the 2-core
AMD EPYC (Zen 3) machine, same source and flags otherwise: 365 CPU-seconds for this CPU's build
against 1273 for all variants (3.5x; 87 against 333 compile steps), and the variant a portable
build would pick here (haswell: AVX2, FMA, F16C, BMI2) compiles the same kernels this build does.

Before the bridge imports it, the build is checked on this CPU in a forked child (isolated.py):
it loads the embedded model and decodes a few tokens. An illegal instruction kills the child,
never the bridge; the outcome is cached beside the build. Until a build has passed, %generate
runs on MLX.

    python -m tunelab_bridge.llama_build --ready     exit 0 when a checked build is there (or the
                                                     platform does not use llama.cpp), else 1
    python -m tunelab_bridge.llama_build --build [--force]    (llama_compile.py)
    python -m tunelab_bridge.llama_build --json      what is built where, and its check
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from . import cpu
from .cache import cache_dir
from .files import atomic_write_json, read_json
from .isolated import run_isolated
from .native_build import compiler_identity

VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# The vendored llama.cpp's own gguf-py is PyPI's gguf of the same release (lock files pin it).
GGUF_PY_VERSION = "0.19.0"
# The multimodal library, tests, tools, examples and HTTPS downloads are not used.
BASE_FLAGS = (
    "-DLLAVA_BUILD=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_BLAS=OFF",
)
# llama-cpp-python's CMakeLists forces llama.cpp's `common` library on (for its multimodal
# tools). Nothing the Python package loads needs it, and it is half of the whole build: 636 of
# 1408 compile-seconds, plus 79 for the HTTP client it links, in the build measured here. The
# one line that forces it is switched off in the unpacked sdist before building.
SOURCE_PATCHES = (
    ("CMakeLists.txt",
     'set(LLAMA_BUILD_COMMON ON CACHE BOOL "Build llama.cpp common library" FORCE)',
     'set(LLAMA_BUILD_COMMON OFF CACHE BOOL "Build llama.cpp common library" FORCE)'),
)
# On x86-64 the CPU backend is compiled for exactly the instruction sets in this CPU's fingerprint
# (the CPUID features cpu.py reads), not with -march=native: the compiler could otherwise use an
# extension the fingerprint cannot see, and a CPU that differs only there (an emulator, a masking
# VM) would share the key and run it. Extensions NumPy does not report (AVX-VNNI, AMX) stay off.
_X86_OPTIONS = (
    ("GGML_SSE42", ("SSE42",)),
    ("GGML_AVX", ("AVX",)),
    ("GGML_AVX2", ("AVX2",)),
    ("GGML_FMA", ("FMA3",)),
    ("GGML_F16C", ("F16C",)),
    ("GGML_BMI2", ("BMI2",)),
    ("GGML_AVX512", ("AVX512F", "AVX512CD", "AVX512VL", "AVX512DQ", "AVX512BW")),
    ("GGML_AVX512_VBMI", ("AVX512F", "AVX512VBMI")),
    ("GGML_AVX512_VNNI", ("AVX512F", "AVX512VNNI")),
    ("GGML_AVX512_BF16", ("AVX512F", "AVX512BF16")),
    ("GGML_AVX_VNNI", None),
    ("GGML_AMX_TILE", None),
    ("GGML_AMX_INT8", None),
    ("GGML_AMX_BF16", None),
)
CPU_SPECIFIC = True


def cpu_flags() -> tuple:
    """The CMake flags that choose the CPU backend's instruction sets for this CPU."""
    identity = cpu.identity()
    if identity.machine not in ("x86_64", "AMD64"):
        return ("-DGGML_NATIVE=ON",)  # other architectures: the compiler's own detection
    have = set(identity.features)
    flags = ["-DGGML_NATIVE=OFF"]
    for option, needs in _X86_OPTIONS:
        flags.append(f"-D{option}={'ON' if needs and set(needs) <= have else 'OFF'}")
    return tuple(flags)


def cmake_flags() -> tuple:
    return cpu_flags() + BASE_FLAGS
BUILD_FORMAT = 1  # bump when the layout of a build directory changes
CHECK_FORMAT = 1
CONSTRAINTS = Path(__file__).resolve().parent.parent / "llama-cpp-build-constraints.txt"
SETUP_HINT = "run `tunelab setup` (it builds llama.cpp once, about 10 minutes on 2 cores)"

Log = Callable[[str], None]


def wanted() -> Optional[str]:
    """None where llama.cpp is tunelab's generation engine, else why it is not built here."""
    if sys.platform == "darwin":
        return "on macOS MLX generates on the GPU (Metal), faster than llama.cpp on the CPU"
    if os.environ.get("TUNELAB_MLX_BACKEND", "cpu") not in ("", "cpu"):
        return "with MLX's CUDA backend MLX generates on the GPU"
    if not sys.platform.startswith("linux"):
        return f"llama.cpp is only built on Linux and macOS, not {sys.platform}"
    return None


@lru_cache(maxsize=1)
def tool_identity() -> List[str]:
    tools = []
    for tool in (os.environ.get("CC", "cc"), os.environ.get("CXX", "c++"), "cmake"):
        tools.append(compiler_identity(tool) if shutil.which(tool) else f"{tool}: missing")
    return tools


def build_key() -> str:
    parts: List[Any] = [BUILD_FORMAT, VERSION, SDIST_SHA256, list(cmake_flags()), [list(p) for p in SOURCE_PATCHES], tool_identity(), platform.machine(), sys.platform]
    if CPU_SPECIFIC:
        parts.append(cpu.fingerprint())
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def build_dir() -> Path:
    return cache_dir() / "llama-cpp" / f"{VERSION}-{build_key()}"


def site_dir() -> Path:
    """The unpacked wheel: put on sys.path to import `llama_cpp` (llama_cpp/lib holds the .so files)."""
    return build_dir() / "site"


def _check_file() -> Path:
    return build_dir() / "check.json"


def failed_file() -> Path:
    return build_dir() / "failed.json"


def is_built() -> bool:
    return (site_dir() / "llama_cpp" / "__init__.py").is_file() and (build_dir() / "build.json").is_file()


def check_result() -> Optional[Dict[str, Any]]:
    """This CPU's cached check of the build, or None when it has not been checked here."""
    known = read_json(_check_file())
    entry = known.get(cpu.fingerprint(CHECK_FORMAT)) if isinstance(known, dict) else None
    return entry if isinstance(entry, dict) else None


def status() -> Dict[str, Any]:
    """What the bridge can say about llama.cpp here, without loading it."""
    reason = wanted()
    built = is_built()
    check = check_result() if built else None
    failed = read_json(failed_file())
    state: Dict[str, Any] = {
        "version": VERSION,
        "flags": list(cmake_flags()),
        "cpu_specific": CPU_SPECIFIC,
        "path": str(site_dir()),
        "built": built,
        "ok": bool(built and check and check.get("ok")),
        "check": check,
        "build": read_json(build_dir() / "build.json") if built else None,
    }
    if reason:
        state["unavailable"] = reason
    elif not built:
        state["unavailable"] = (
            f"the llama.cpp build failed ({failed.get('reason')}); see {build_dir() / 'build.log'}, then run `python -m tunelab_bridge.llama_build --build --force`"
            if isinstance(failed, dict) else f"llama.cpp is not built for this CPU yet; {SETUP_HINT}"
        )
    elif check is None:
        state["unavailable"] = "llama.cpp is built but not yet checked on this CPU"
    elif not check.get("ok"):
        state["unavailable"] = f"llama.cpp failed its check on this CPU ({check.get('reason')})"
    return state


# --- checking and loading ---------------------------------------------------------------------

_CHECK_PROMPT = "The capital of France is"


def _check_in_child(site: str, model: str) -> Dict[str, Any]:
    """In the forked child: import the build, load the model, decode a few tokens greedily."""
    sys.path.insert(0, site)
    from .llama_engine import LlamaEngine

    engine = LlamaEngine(Path(model), n_ctx=256)
    try:
        tokens = engine.tokenize(_CHECK_PROMPT)
        logits = engine.first_logits(tokens)
        import math

        if not all(math.isfinite(float(v)) for v in logits[:: max(1, len(logits) // 512)]):
            raise ArithmeticError("the first step's logits are not finite")
        answer = engine.generate_tokens(tokens, max_tokens=4)
        return {"system_info": engine.system_info(), "tokens": answer}
    finally:
        engine.close()


def ensure_checked(log: Log = print) -> Dict[str, Any]:
    """This CPU's check of the build (from the cache, or run now in a forked child)."""
    known = check_result()
    if known is not None:
        return known
    from .default_model import DefaultModelUnavailable, gguf_file

    try:
        model = gguf_file(log)
    except DefaultModelUnavailable as error:
        return {"ok": False, "reason": str(error)}
    log("checking llama.cpp on this CPU (a forked child loads the embedded model and decodes a few tokens)")
    outcome = run_isolated(lambda: _check_in_child(str(site_dir()), str(model)), timeout_s=300)
    entry: Dict[str, Any] = {
        "ok": outcome.ok,
        "reason": outcome.reason or None,
        "cpu": cpu.identity().summary,
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(outcome.value or {}),
    }
    stored = read_json(_check_file())
    stored = stored if isinstance(stored, dict) else {}
    stored[cpu.fingerprint(CHECK_FORMAT)] = entry
    try:
        atomic_write_json(_check_file(), stored)
    except OSError:
        pass  # checked again next time
    log("llama.cpp passed its check on this CPU" if outcome.ok else f"llama.cpp failed its check on this CPU: {outcome.reason}")
    return entry


def ready() -> bool:
    """A build that passed its check on this CPU is there (cheap: reads two small files)."""
    if wanted() is not None or not is_built():
        return False
    check = check_result()
    return bool(check and check.get("ok"))


def import_llama_cpp() -> Any:
    """The `llama_cpp` module of this CPU's checked build. Call ready() (or ensure_checked) first."""
    site = str(site_dir())
    if site not in sys.path:
        sys.path.insert(0, site)
    import llama_cpp

    return llama_cpp


def main(argv: List[str]) -> int:
    if "--ready" in argv:
        if wanted() is not None:
            return 0
        if ready():
            return 0
        # A recorded failure is not retried on every set-up (it costs minutes); --force retries.
        return 0 if read_json(failed_file()) is not None and not is_built() else 1
    if "--build" in argv:
        from .llama_compile import BuildFailed, build

        try:
            state = build(lambda line: print(line, flush=True), force="--force" in argv)
        except BuildFailed as error:
            print(error, file=sys.stderr)
            return 1
        if state.get("unavailable") and wanted() is None:
            print(state["unavailable"], file=sys.stderr)
            return 1
        return 0
    if "--check" in argv:
        return 0 if ensure_checked(lambda line: print(line, flush=True)).get("ok") else 1
    print(json.dumps(status(), indent=None if "--json" in argv else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
