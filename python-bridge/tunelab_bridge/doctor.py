"""`python -m tunelab_bridge.doctor [--recheck]`: what the bridge's experiments run on, as JSON.

The same start-up as the bridge (the BLAS chosen and loaded before MLX, the host kernels checked
on this CPU), then one line `TUNELAB_DOCTOR {...}` that `tunelab doctor` formats. --recheck checks
every BLAS candidate again instead of using this CPU's cached checks.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict


def report(recheck: bool = False) -> Dict[str, Any]:
    from . import blas

    out: Dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable, "blas": blas.activate(recheck=recheck)}
    import mlx.core as mx

    out["mlx"] = getattr(mx, "__version__", "?")
    out["device"] = str(mx.default_device())
    out["metal"] = bool(getattr(mx, "metal", None) and mx.metal.is_available())
    cuda = getattr(mx, "cuda", None)
    out["cuda"] = bool(cuda and hasattr(cuda, "is_available") and cuda.is_available())
    try:
        import mlx_lm

        out["mlx_lm"] = getattr(mlx_lm, "__version__", "?")
    except Exception as error:  # noqa: BLE001 - reported, not raised
        out["mlx_lm_error"] = str(error)
    if sys.platform.startswith("linux"):
        from . import fast

        out["host_kernels"] = fast.report()
        from . import llama_build

        # %generate's CPU engine: built for this CPU at set-up, checked once in a forked child.
        out["llama_cpp"] = llama_build.status()
    return out


if __name__ == "__main__":
    print("TUNELAB_DOCTOR " + json.dumps(report(recheck="--recheck" in sys.argv[1:])))
