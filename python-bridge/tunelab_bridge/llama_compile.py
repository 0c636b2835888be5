"""Compiling llama.cpp for this CPU from llama-cpp-python's pinned sdist (`python -m
tunelab_bridge.llama_build --build`): download and verify the sdist, apply tunelab's source
patches, build the wheel with this CPU's CMake flags and publish the unpacked package into its
cache directory whole. What a build is keyed by, and its check on this CPU, are llama_build.py's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List

from . import cpu
from .cache import wheels_dir
from .files import atomic_write_json, replace_directory
from .llama_build import (
    CONSTRAINTS, CPU_SPECIFIC, SDIST, SDIST_SHA256, SOURCE_PATCHES, VERSION, Log, build_dir, cmake_flags, cpu_flags,
    ensure_checked, failed_file, is_built, status, tool_identity, wanted,
)

_PROGRESS = re.compile(r"^\s*\[(\d+)/(\d+)\]")


class BuildFailed(RuntimeError):
    """One sentence: what failed and where its log is."""


def _sdist(log: Log) -> Path:
    target = wheels_dir() / SDIST
    if target.is_file() and _sha256(target) == SDIST_SHA256:
        return target
    log(f"downloading llama-cpp-python {VERSION} (source, ~77 MB)")
    wheels_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels_dir(), prefix=".sdist-") as work:
        requirement = Path(work) / "requirement.txt"
        # --require-hashes: the exact file this module was written and measured against.
        requirement.write_text(f"llama-cpp-python=={VERSION} --hash=sha256:{SDIST_SHA256}\n", encoding="utf-8")
        # pip reads the sdist's metadata in an isolated environment: scikit-build-core, pinned.
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:",
             "--require-hashes", "-r", str(requirement), "-d", work],
            capture_output=True, text=True, env={**os.environ, "PIP_CONSTRAINT": str(CONSTRAINTS)},
        )
        got = Path(work) / SDIST
        if done.returncode != 0 and not got.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildFailed(f"could not download llama-cpp-python {VERSION} from PyPI ({last})")
        if _sha256(got) != SDIST_SHA256:
            raise BuildFailed(f"the downloaded {SDIST} does not have the expected SHA-256; delete {wheels_dir()} / {SDIST} and retry")
        os.replace(got, target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_tools() -> List[str]:
    return [tool for tool in ("cmake", os.environ.get("CC", "cc"), os.environ.get("CXX", "c++")) if shutil.which(tool) is None]


def build(log: Log = print, force: bool = False) -> Dict[str, Any]:
    """Builds llama.cpp for this machine unless a build with the same key exists; returns status()."""
    reason = wanted()
    if reason:
        log(f"llama.cpp is not needed here: {reason}")
        return status()
    if is_built() and not force:
        ensure_checked(log)
        return status()
    missing = _missing_tools()
    if missing:
        raise BuildFailed(f"llama.cpp needs {', '.join(missing)} to build; install them (Debian: apt-get install cmake ninja-build g++) and run setup again")
    target = build_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    sdist = _sdist(log)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        work_dir = Path(work)
        log_path = work_dir / "build.log"
        env = dict(os.environ)
        env["CMAKE_ARGS"] = " ".join(cmake_flags())
        env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(cpu.usable_cores())
        env["PIP_CONSTRAINT"] = str(CONSTRAINTS)  # reaches the isolated build environment's pip
        env.pop("PIP_REQUIRE_VIRTUALENV", None)
        source = _unpacked(sdist, work_dir)
        # --no-cache-dir: pip's wheel cache is keyed by the source, not by CMAKE_ARGS.
        command = [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-v", "--disable-pip-version-check",
            "--config-settings", f"build-dir={work_dir / 'cmake'}", "-w", str(work_dir / "wheel"), str(source),
        ]
        on = [f[len("-DGGML_"):-len("=ON")] for f in cpu_flags() if f.endswith("=ON")]
        log(f"compiling llama.cpp {VERSION} for this CPU ({', '.join(on)}) on {cpu.usable_cores()} cores; this takes several minutes")
        code = _run_with_progress(command, env, log_path, log)
        if code != 0:
            _remember_failure(log_path, f"pip wheel exited with {code}")
            raise BuildFailed(f"llama.cpp did not build (exit {code}); its log is {build_dir() / 'build.log'}")
        wheels = list((work_dir / "wheel").glob("llama_cpp_python-*.whl"))
        if not wheels:
            _remember_failure(log_path, "no wheel was produced")
            raise BuildFailed(f"llama.cpp's build produced no wheel; its log is {build_dir() / 'build.log'}")
        staging = work_dir / "staged"
        with zipfile.ZipFile(wheels[0]) as archive:
            # Only the package: the wheel also carries headers and a second copy of the libraries.
            archive.extractall(staging / "site", [m for m in archive.namelist() if m.startswith("llama_cpp/")])
        for lib in (staging / "site" / "llama_cpp" / "lib").glob("*"):
            lib.chmod(0o755)
        shutil.copy2(wheels[0], staging / wheels[0].name)
        shutil.copy2(log_path, staging / "build.log")
        atomic_write_json(staging / "build.json", {
            "version": VERSION,
            "flags": list(cmake_flags()),
            "tools": tool_identity(),
            "cpu": cpu.identity().summary if CPU_SPECIFIC else None,
            "seconds": round(time.monotonic() - started, 1),
            "cores": cpu.usable_cores(),
            "wheel": wheels[0].name,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        # Renamed into place whole: a bridge looking meanwhile finds no build or a complete one.
        replace_directory(staging, target)
    log(f"built llama.cpp in {time.monotonic() - started:.0f} s into {target}")
    ensure_checked(log)
    return status()


def _unpacked(sdist: Path, work_dir: Path) -> Path:
    """The sdist unpacked into `work_dir`, with SOURCE_PATCHES applied (each must match once)."""
    import tarfile

    with tarfile.open(sdist) as archive:
        archive.extractall(work_dir / "src", filter="data")
    root = work_dir / "src" / SDIST[: -len(".tar.gz")]
    for relative, old, new in SOURCE_PATCHES:
        path = root / relative
        text = path.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise BuildFailed(f"llama-cpp-python {VERSION}'s {relative} is not the one tunelab patches; the pinned sdist changed")
        path.write_text(text.replace(old, new), encoding="utf-8")
    return root


def _run_with_progress(command: List[str], env: Dict[str, str], log_path: Path, log: Log) -> int:
    """Runs the build with its full output in `log_path`, telling the person how far it is:
    ninja numbers its steps ([12/140]), so a line every 10% (and the configure step)."""
    last_tenth = -1
    with open(log_path, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            match = _PROGRESS.match(line)
            if match:
                done, total = int(match.group(1)), int(match.group(2))
                tenth = done * 10 // max(total, 1)
                if tenth > last_tenth:
                    last_tenth = tenth
                    log(f"compiling llama.cpp: {done}/{total} steps ({done * 100 // max(total, 1)}%)")
            elif "-- Build files have been written" in line:
                log("configured; compiling")
        return process.wait()


def _remember_failure(log_path: Path, reason: str) -> None:
    target = build_dir()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(log_path, target / "build.log")
    atomic_write_json(failed_file(), {"reason": reason, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
