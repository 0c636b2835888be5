"""What every process that runs MLX does first (the bridge, each rank of a distributed run, doctor):
native code settled before anything else. The crash reporter first (so a native fault names its
library), then the BLAS, chosen and loaded before MLX is imported (libmlx binds its BLAS symbols
when it loads), then the host kernels' check on this CPU; all before any thread starts (the
checks run in forked children).
"""

from __future__ import annotations


def settle_native_code() -> None:
    from . import blas, crash_report

    crash_report.install()
    blas.activate()
    from .fast import host_kernels  # imports MLX: after the BLAS

    host_kernels.prepare()
