"""The bridge keeps freed activation memory: repeated allocations of activation-sized blocks
stop page-faulting once `keep_freed_memory` ran (glibc only)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, resource, sys
    from tunelab_bridge.allocator import keep_freed_memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "tuned":
        assert keep_freed_memory()

    def step():
        # Sizes like one training step's intermediate arrays, freed at the end of the step.
        blocks = []
        for size in (400_000, 3_000_000, 600_000, 5_000_000, 250_000):
            p = libc.malloc(size)
            ctypes.memset(p, 1, size)
            blocks.append(p)
        for p in blocks:
            libc.free(p)

    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
    """
)


def faults_per_step(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc knobs")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    default, tuned = faults_per_step("default"), faults_per_step("tuned")
    assert default > 5, f"the probe no longer provokes page faults with glibc's defaults ({default}/step)"
    assert tuned < default / 5
