"""`python -m tunelab_bridge.fast --build | --ready`: set-up's step for the host kernels.

--build builds them and checks each SIMD path on this CPU (exit 1 when none passes);
--ready exits 0 when both are already done.
"""

from __future__ import annotations

import sys

from . import build


def main(argv: list[str]) -> int:
    from . import host_kernels
    from .kernels_check import is_checked

    if argv == ["--ready"]:
        path = host_kernels.library_path()
        return 0 if path.is_file() and is_checked(path) else 1
    if argv != ["--build"]:
        print("usage: python -m tunelab_bridge.fast --build | --ready", file=sys.stderr)
        return 2
    try:
        built = build()
    except (host_kernels.BuildError, RuntimeError) as error:
        print(error, file=sys.stderr)
        return 1
    print(built["path"])
    for name, why in built["checks"].items():
        print(f"  {name}: {'passed' if why is None else 'failed: ' + why}")
    return 0 if any(why is None for why in built["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
