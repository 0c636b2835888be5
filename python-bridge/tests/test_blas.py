"""The bridge's BLAS: OpenBLAS preloaded by default, the reference BLAS only on request, same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the BLAS choice exists on Linux only")

BRIDGE_ROOT = Path(__file__).resolve().parents[1]

# Runs in a child: chooses the BLAS like the bridge does, multiplies and factorises fixed
# matrices on MLX's CPU backend, and saves the results next to the BLAS report.
_CHILD = """
import json, sys
from tunelab_bridge import blas
blas.ensure_optimised_blas()
import mlx.core as mx
import numpy as np
mx.set_default_device(mx.cpu)
rng = np.random.default_rng(7)
a = mx.array(rng.standard_normal((300, 200), dtype=np.float32))
b = mx.array(rng.standard_normal((200, 150), dtype=np.float32))
product = a @ b
inverse = mx.linalg.inv(a[:150] @ b + 50 * mx.eye(150), stream=mx.cpu)
np.savez(sys.argv[1], product=np.array(product), inverse=np.array(inverse))
print(json.dumps(blas.blas_report()))
"""


def _child_env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TUNELAB_BLAS")}
    env.update(TUNELAB_CACHE=str(cache), **extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, *args], env=env, cwd=BRIDGE_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_default_is_openblas_with_reference_results(tmp_path: Path) -> None:
    fast = _run(["-c", _CHILD, str(tmp_path / "fast.npz")], _child_env(tmp_path))
    slow = _run(["-c", _CHILD, str(tmp_path / "slow.npz")], _child_env(tmp_path, TUNELAB_BLAS="reference"))

    assert fast["reference"] is False and fast["warning"] is None, fast
    assert fast["name"].startswith("OpenBLAS"), fast
    assert fast["path"].endswith("libopenblas.so.0"), fast
    assert slow["reference"] is True and "mlx_cpu.libs" in slow["path"], slow

    a, b = np.load(tmp_path / "fast.npz"), np.load(tmp_path / "slow.npz")
    np.testing.assert_allclose(a["product"], b["product"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a["inverse"], b["inverse"], rtol=1e-4, atol=1e-6)
    rng = np.random.default_rng(7)
    exact = rng.standard_normal((300, 200), dtype=np.float32).astype(np.float64) @ rng.standard_normal((200, 150), dtype=np.float32).astype(np.float64)
    np.testing.assert_allclose(a["product"], exact, rtol=1e-4, atol=1e-3)


def test_reference_blas_reports_a_warning_with_the_fix(tmp_path: Path) -> None:
    report = _run(["-m", "tunelab_bridge.blas", "--json"], _child_env(tmp_path, TUNELAB_BLAS="reference"))
    assert report["reference"] is True
    assert "reference" in report["name"]
    assert report["warning"] and "unset TUNELAB_BLAS" in report["warning"], report
    assert report["gflops"] > 0


def test_missing_library_names_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-libopenblas.so.0"
    report = _run(["-m", "tunelab_bridge.blas", "--json"], _child_env(tmp_path, TUNELAB_BLAS=str(missing)))
    assert report["reference"] is True
    assert str(missing) in report["warning"], report


def test_rate_is_measured_once_per_library(tmp_path: Path) -> None:
    first = _run(["-m", "tunelab_bridge.blas", "--json"], _child_env(tmp_path))
    measurements = json.loads((tmp_path / "blas.json").read_text())
    assert [key for key in measurements if key.startswith(first["path"] + "|")], measurements
    # A planted rate is what a second run reports: it read the cache instead of measuring again.
    for entry in measurements.values():
        entry["gflops"] = 12345.6
    (tmp_path / "blas.json").write_text(json.dumps(measurements))
    second = _run(["-m", "tunelab_bridge.blas", "--json"], _child_env(tmp_path))
    assert second["gflops"] == 12345.6 and second["path"] == first["path"]


def test_human_report_names_the_library(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tunelab_bridge.blas"], env=_child_env(tmp_path), cwd=BRIDGE_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "BLAS: OpenBLAS" in done.stdout and "GFLOP/s" in done.stdout and "warning" not in done.stdout


def test_one_blas_thread_per_core_unless_the_user_sets_it(tmp_path: Path) -> None:
    chosen = _run(["-m", "tunelab_bridge.blas", "--json"], _child_env(tmp_path, OPENBLAS_NUM_THREADS="1"))
    env = _child_env(tmp_path)
    env.pop("OPENBLAS_NUM_THREADS", None)
    default = _run(["-m", "tunelab_bridge.blas", "--json"], env)
    assert default["threads"] == (os.cpu_count() or 1), default
    assert chosen["threads"] == 1, chosen
