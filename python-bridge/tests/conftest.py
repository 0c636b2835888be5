"""Shared fixtures of the bridge's tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

# Tiny test models gain nothing from BLAS threads, and on a busy machine OpenBLAS's spinning
# threads make each step 20x slower (bridge_process.py sets the same for child bridges).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The equivalence tests compare steps whose products have different shapes (a cached prefix,
# trimmed batches) with mlx-lm's own step. The reference BLAS sums every element in the same
# order whatever the shape, so what they measure is the fast path's arithmetic, not OpenBLAS's
# shape-dependent blocking (up to ~1% after 20 Adam steps on tiny models). test_blas.py checks
# the bridge's own choice in child processes; bridges started by the tests choose as users' do.
os.environ.setdefault("TUNELAB_BLAS", "reference")
from tunelab_bridge import blas  # noqa: E402

blas.activate()


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
