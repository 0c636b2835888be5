"""The bridge's BLAS: every candidate checked on this CPU in a child, the fastest that passed
loaded before MLX, and nothing that failed ever loaded into the process that asked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the BLAS choice exists on Linux only")

BRIDGE_ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: chooses the BLAS like the bridge does, multiplies and factorises
# fixed matrices on MLX's CPU backend, and saves the results next to the BLAS report.
_CHILD = """
import json, sys
from tunelab_bridge import blas
report = blas.activate()
import mlx.core as mx
import numpy as np
mx.set_default_device(mx.cpu)
rng = np.random.default_rng(7)
a = mx.array(rng.standard_normal((300, 200), dtype=np.float32))
b = mx.array(rng.standard_normal((200, 150), dtype=np.float32))
product = a @ b
inverse = mx.linalg.inv(a[:150] @ b + 50 * mx.eye(150), stream=mx.cpu)
np.savez(sys.argv[1], product=np.array(product), inverse=np.array(inverse))
print(json.dumps(report))
"""

# A library that kills whoever loads it with an illegal instruction (x86-64's ud2, arm64's udf):
# what an AVX-512-only OpenBLAS does on a CPU without AVX-512, on every CPU.
_ILLEGAL_ON_LOAD = """
__attribute__((constructor)) static void die(void) {
#if defined(__x86_64__)
  __asm__ volatile("ud2");
#elif defined(__aarch64__)
  __asm__ volatile("udf #0");
#endif
}
void cblas_sgemm(void) {}
"""

# A library that binds (it exports cblas_sgemm) but multiplies wrong: it writes zeros to C.
_WRONG_PRODUCT = """
typedef int I;
void cblas_sgemm(I order, I ta, I tb, I m, I n, I k, float alpha, const float* a, I lda, const float* b, I ldb, float beta, float* c, I ldc) {
  (void)ta; (void)tb; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb; (void)beta;
  for (I i = 0; i < m; ++i) for (I j = 0; j < n; ++j) c[order == 101 ? i * ldc + j : j * ldc + i] = 0.0f;
}
"""


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TUNELAB_BLAS", "OPENBLAS_NUM_THREADS")}
    env["PYTHONPATH"] = str(BRIDGE_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(TUNELAB_CACHE=str(cache), **extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, *args], env=env, cwd=BRIDGE_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _compile(tmp_path: Path, name: str, source: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the test libraries")
    src, out = tmp_path / f"{name}.c", tmp_path / f"lib{name}.so"
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(out)], check=True)
    return out


def test_the_fastest_checked_library_is_loaded_and_computes_what_the_reference_does(tmp_path: Path) -> None:
    fast = _run(["-c", _CHILD, str(tmp_path / "fast.npz")], _env(tmp_path))
    slow = _run(["-c", _CHILD, str(tmp_path / "slow.npz")], _env(tmp_path, TUNELAB_BLAS="reference"))

    assert fast["reference"] is False and fast["warning"] is None, fast
    chosen = [c for c in fast["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["ok"] and chosen[0]["name"] == fast["library"], fast
    passed = [c for c in fast["candidates"] if c["ok"] and c["name"] != "reference"]
    assert chosen[0]["gflops"] == max(c["gflops"] for c in passed)
    assert fast["name"].startswith("OpenBLAS") and fast["build"], fast
    assert fast["cpu"]["level"] and fast["cpu"]["summary"], fast
    assert slow["reference"] is True and slow["library"] == "reference", slow

    a, b = np.load(tmp_path / "fast.npz"), np.load(tmp_path / "slow.npz")
    np.testing.assert_allclose(a["product"], b["product"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a["inverse"], b["inverse"], rtol=1e-4, atol=1e-6)
    rng = np.random.default_rng(7)
    exact = rng.standard_normal((300, 200), dtype=np.float32).astype(np.float64) @ rng.standard_normal((200, 150), dtype=np.float32).astype(np.float64)
    np.testing.assert_allclose(a["product"], exact, rtol=1e-4, atol=1e-3)


def test_checks_are_cached_per_cpu_and_reused(tmp_path: Path) -> None:
    first = _run(["-m", "tunelab_bridge.blas", "--json"], _env(tmp_path))
    again = _run(["-m", "tunelab_bridge.blas", "--json"], _env(tmp_path))
    assert first["cached"] is False and again["cached"] is True
    assert again["library"] == first["library"] and again["checked_at"] == first["checked_at"]
    stored = json.loads((tmp_path / "blas-checks.json").read_text())
    assert len(stored) == 1 and next(iter(stored.values()))["cpu"] == first["cpu"]["summary"]
    rechecked = _run(["-m", "tunelab_bridge.blas", "--json", "--recheck"], _env(tmp_path))
    assert rechecked["cached"] is False


def test_the_key_changes_with_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab_bridge import cpu
    from tunelab_bridge.blas import choice

    candidates = [choice.found.reference()]
    here = choice._key(candidates, "auto")
    other = cpu.CpuIdentity(name="Another CPU", machine="x86_64", features=("SSE2", "SSE3"), level="x86-64")
    monkeypatch.setattr(cpu, "identity", lambda: other)
    assert choice._key(candidates, "auto") != here


def test_a_library_that_dies_with_sigill_is_never_loaded(tmp_path: Path) -> None:
    illegal = _compile(tmp_path, "illegal", _ILLEGAL_ON_LOAD)
    report = _run(["-m", "tunelab_bridge.blas", "--json"], _env(tmp_path, TUNELAB_BLAS=str(illegal)))
    custom = next(c for c in report["candidates"] if c["name"] == "custom")
    assert custom["ok"] is False and "SIGILL" in custom["reason"], custom
    # The process that asked is alive and runs on the fastest library that passed instead.
    assert report["library"] not in ("custom", "reference"), report
    assert f"TUNELAB_BLAS={illegal} failed its check on this CPU (killed by SIGILL" in report["warning"]


def test_a_library_with_wrong_products_fails_its_check(tmp_path: Path) -> None:
    wrong = _compile(tmp_path, "wrong", _WRONG_PRODUCT)
    report = _run(["-m", "tunelab_bridge.blas", "--json"], _env(tmp_path, TUNELAB_BLAS=str(wrong)))
    custom = next(c for c in report["candidates"] if c["name"] == "custom")
    assert custom["ok"] is False and "product is wrong" in custom["reason"], custom


def test_the_reference_blas_reports_a_warning_with_the_fix(tmp_path: Path) -> None:
    report = _run(["-m", "tunelab_bridge.blas", "--json"], _env(tmp_path, TUNELAB_BLAS="reference"))
    assert report["reference"] is True and "reference" in report["name"]
    assert report["warning"] and "unset TUNELAB_BLAS" in report["warning"], report
    assert report["gflops"] > 0


def test_a_missing_library_names_the_setting_and_the_bridge_uses_the_best_other(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-libopenblas.so.0"
    report = _run(["-m", "tunelab_bridge.blas", "--json"], _env(tmp_path, TUNELAB_BLAS=str(missing)))
    assert str(missing) in report["warning"] and "does not exist" in report["warning"], report
    assert report["reference"] is False


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None, reason="the forwarder is built with gcc and nm")
def test_scipy_openblas32_is_reached_through_its_forwarding_library(tmp_path: Path) -> None:
    report = _run(["-m", "tunelab_bridge.blas", "--json"], _env(tmp_path, TUNELAB_BLAS="scipy-openblas32"))
    assert report["library"] == "scipy-openblas32", report
    assert report["build"] == "DYNAMIC_ARCH" and report["core"], report
    assert report["path"].endswith(".so") and "blas-forwarder" in report["path"]


def test_isolated_checks_report_exceptions_signals_and_timeouts() -> None:
    import signal
    import time

    from tunelab_bridge.isolated import run_isolated

    assert run_isolated(lambda: {"answer": 42}).value == {"answer": 42}
    failed = run_isolated(lambda: 1 / 0)
    assert not failed.ok and failed.reason.startswith("ZeroDivisionError")
    killed = run_isolated(lambda: os.kill(os.getpid(), signal.SIGILL))
    assert not killed.ok and "SIGILL" in killed.reason and "instructions this CPU lacks" in killed.reason
    slow = run_isolated(lambda: time.sleep(30), timeout_s=0.5)
    assert not slow.ok and "did not finish" in slow.reason
