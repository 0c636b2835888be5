"""Shared fixtures of the bridge's tests."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# Tiny test models gain nothing from BLAS threads, and on a busy machine OpenBLAS's spinning
# threads make each step 20x slower (bridge_process.py sets the same for child bridges).
try:
    ctypes.CDLL(None).openblas_set_num_threads(1)
except (AttributeError, OSError):
    pass
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-block Llama with its own byte-level BPE tokenizer, as an mlx-lm model directory."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as an mlx-lm directory (converted by `tunelab setup`)."""
    from tunelab_bridge.default_model import DefaultModelUnavailable, ensure_default_model

    try:
        return ensure_default_model(log=lambda _line: None)
    except DefaultModelUnavailable as error:
        pytest.fail(str(error))
