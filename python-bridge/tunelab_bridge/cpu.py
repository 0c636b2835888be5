"""The CPU this process runs on, as its native code sees it, and how many cores it may use.

Every cached decision about native code (which BLAS passed its check, which host-kernel paths
ran correctly) is keyed by `fingerprint()`, so a home directory or venv shared between machines
never carries a decision to a CPU it was not made on.

The instruction sets come from NumPy's runtime detection, which asks the CPUID instruction
itself, not from /proc/cpuinfo: under an emulator (qemu-user) or a hypervisor that masks
features, /proc/cpuinfo describes the host while CPUID describes what code can actually use.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Optional, Tuple

# x86-64 micro-architecture levels (the psABI's), highest first, with what each needs beyond
# the one below as NumPy names the features.
_X86_LEVELS = (
    ("x86-64-v4", ("AVX512F", "AVX512BW", "AVX512CD", "AVX512DQ", "AVX512VL")),
    ("x86-64-v3", ("AVX", "AVX2", "BMI", "BMI2", "F16C", "FMA3", "LZCNT", "MOVBE")),
    ("x86-64-v2", ("CX16", "LAHF", "POPCNT", "SSE3", "SSE41", "SSE42", "SSSE3")),
)
# The features worth naming to a person (the rest are in `features`).
_NOTABLE = ("AVX512_SPR", "AVX512BF16", "AVX512F", "AVX2", "FMA3", "AVX", "SSE42", "ASIMD", "SVE")


@dataclass(frozen=True)
class CpuIdentity:
    name: str
    machine: str
    features: Tuple[str, ...]
    level: str

    @property
    def summary(self) -> str:
        """'AMD EPYC (x86-64-v3: AVX2 FMA3, no AVX-512)': what a figure was measured on."""
        notable = [f for f in _NOTABLE if f in self.features]
        has_avx512 = "AVX512F" in self.features
        isa = " ".join(n for n in notable if not (n.startswith("AVX512") and n != "AVX512F"))
        missing = "" if has_avx512 or self.machine not in ("x86_64", "AMD64") else ", no AVX-512"
        return f"{self.name} ({self.level}: {isa or 'baseline'}{missing})"

    def as_dict(self) -> Dict[str, object]:
        return {"name": self.name, "machine": self.machine, "level": self.level, "features": list(self.features), "summary": self.summary}


# /proc/cpuinfo flags and the NumPy names of the same features.
_CPUINFO_FLAGS = {"avx512f": "AVX512F", "avx2": "AVX2", "fma": "FMA3", "avx": "AVX", "sse4_2": "SSE42"}


def _cpuinfo() -> Tuple[str, Tuple[str, ...]]:
    """(the first processor's model name, its flags) from /proc/cpuinfo."""
    name, flags = "", ()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if not name and key in ("model name", "Model", "Hardware", "cpu model"):
                    name = " ".join(value.split())
                elif not flags and key in ("flags", "Features"):
                    flags = tuple(value.split())
                if name and flags:
                    break
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), flags


def _describe(name: str, flags: Tuple[str, ...], features: Tuple[str, ...]) -> str:
    """The model name, marked where code sees fewer features than /proc/cpuinfo lists: the
    process runs under an emulator (qemu-user shows the host's /proc/cpuinfo) or a masking VM."""
    hidden = [numpy for flag, numpy in _CPUINFO_FLAGS.items() if flag in flags and numpy not in features]
    return f"{name}, seen as a CPU without {', '.join(hidden)} (emulated or masked)" if hidden and features else name


def _runtime_features() -> Tuple[str, ...]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as found  # NumPy >= 2
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as found  # type: ignore[no-redef]
        except ImportError:
            return ()
    return tuple(sorted(name for name, present in found.items() if present))


def _level(machine: str, features: Tuple[str, ...]) -> str:
    if machine not in ("x86_64", "AMD64"):
        return machine
    have = set(features)
    for index, (name, _) in enumerate(_X86_LEVELS):
        if all(set(needs) <= have for _, needs in _X86_LEVELS[index:]):
            return name
    return "x86-64"


@lru_cache(maxsize=1)
def identity() -> CpuIdentity:
    machine = platform.machine()
    features = _runtime_features()
    name, flags = _cpuinfo()
    return CpuIdentity(name=_describe(name, flags, features), machine=machine, features=features, level=_level(machine, features))


def fingerprint(extra: Optional[object] = None) -> str:
    """A short key for this CPU's model and instruction sets (and `extra`, e.g. a library's identity)."""
    cpu = identity()
    text = json.dumps([cpu.machine, cpu.name, cpu.features, extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# A smaller thread budget than the cores: set for each of several training processes that share
# one machine (distributed.py), so that together they use its cores once.
THREADS_ENV = "TUNELAB_THREADS"


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask, which a container or `taskset` narrows
    below os.cpu_count(), or TUNELAB_THREADS where that is smaller. Every thread pool in the bridge
    (OpenBLAS, the host kernels) sizes itself from this one number, so they never oversubscribe
    the cores they share."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    budget = os.environ.get(THREADS_ENV, "")
    return max(1, min(cores, int(budget))) if budget.isdigit() else cores
