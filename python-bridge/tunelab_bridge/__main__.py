"""`python -m tunelab_bridge serve --listen ENDPOINT --runs-dir DIR [...]` and `... keys DIR NAME`.

Native code is settled before anything else (startup.py): the BLAS must be loaded before MLX.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tunelab_bridge", description="tunelab's MLX bridge")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the bridge protocol on a ZeroMQ ROUTER")
    serve.add_argument("--listen", required=True, help="ipc:///path or tcp://HOST:PORT (port 0 picks a free one)")
    serve.add_argument("--runs-dir", required=True, type=Path, help="where run directories are written")
    serve.add_argument("--curve-secret-key", type=Path, help="the server's .key_secret certificate file")
    serve.add_argument("--curve-clients", type=Path, help="directory of the public .key files allowed to connect")
    serve.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    keys = commands.add_parser("keys", help="create a CURVE certificate pair NAME.key / NAME.key_secret")
    keys.add_argument("directory", type=Path)
    keys.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":
        from .curve import create_keys

        public, secret = create_keys(args.directory, args.name)
        print(f"public key: {public}\nsecret key: {secret}")
        return 0

    from .startup import settle_native_code

    settle_native_code()
    from .allocator import keep_freed_memory

    keep_freed_memory()
    from .protocol import BridgeError
    from .server import ServeOptions, Server
    from .service import Service

    options = ServeOptions(
        listen=args.listen,
        runs_dir=args.runs_dir.resolve(),
        curve_secret_key=args.curve_secret_key,
        curve_clients=args.curve_clients,
        parent_pid=args.parent_pid,
    )
    options.runs_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = Server(options, Service(options.runs_dir))
        code = server.serve()
    except BridgeError as error:
        print(f"tunelab bridge: {error.message}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        code = 0
    return code


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A worker thread stuck inside one long MLX call must not keep the process alive.
    os._exit(code)
