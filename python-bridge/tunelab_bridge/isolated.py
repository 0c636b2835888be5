"""Running a check of native code in a forked child, so that code built for instructions this
CPU lacks kills the child (SIGILL), never the process that asked.

A fork, not a new interpreter: the child inherits this process exactly as it runs, including an
emulator such as qemu-user, which a fresh `execve` would leave. The caller must not have loaded
the code under test yet (the child must load it itself), and the child must not need threads the
parent started: only the forking thread exists in it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

# Signals that mean "this native code cannot run here", in the words a person needs.
_FATAL_SIGNALS = {
    signal.SIGILL: "an illegal instruction: the code uses instructions this CPU lacks",
    signal.SIGSEGV: "a segmentation fault",
    signal.SIGBUS: "a bus error",
    signal.SIGFPE: "a floating-point exception",
    signal.SIGABRT: "an abort",
}


@dataclass
class Outcome:
    ok: bool
    value: Any = None
    reason: str = ""


def describe_signal(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    what = _FATAL_SIGNALS.get(number)  # type: ignore[call-overload]
    return f"killed by {name} ({what})" if what else f"killed by {name}"


def run_isolated(check: Callable[[], Any], timeout_s: float = 300.0) -> Outcome:
    """Runs `check()` in a forked child; its JSON-serialisable return value comes back as
    Outcome(ok=True, value). A raised exception, a fatal signal or a timeout come back as
    Outcome(ok=False, reason) with one sentence saying what happened."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking with threads running (NumPy's BLAS pool, say); the child
        # only runs `check` and never touches what those threads guard.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        _quiet_death()
        code = 0
        try:
            message = {"ok": True, "value": check()}
        except BaseException as error:  # noqa: BLE001 - everything goes back to the parent as a sentence
            message = {"ok": False, "reason": _sentence(error), "detail": traceback.format_exc()}
            code = 1
        try:
            os.write(write_end, json.dumps(message, default=str).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    return _collect(pid, read_end, timeout_s)


def _quiet_death() -> None:
    """A check that dies is expected to: no core file, no traceback dump, no crash report (the
    parent's fatal-signal handlers, inherited by the fork, would print them as the bridge's)."""
    import faulthandler

    faulthandler.disable()
    for number in _FATAL_SIGNALS:
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def _collect(pid: int, read_end: int, timeout_s: float) -> Outcome:
    chunks = []
    deadline = time.monotonic() + timeout_s
    status: Optional[int] = None
    os.set_blocking(read_end, False)
    try:
        while True:
            try:
                chunk = os.read(read_end, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk:
                chunks.append(chunk)
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                try:
                    while chunk := os.read(read_end, 1 << 16):
                        chunks.append(chunk)
                except BlockingIOError:
                    pass
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Outcome(False, reason=f"did not finish within {timeout_s:.0f} s")
            time.sleep(0.01)
    finally:
        os.close(read_end)
    if status is not None and os.WIFSIGNALED(status):
        return Outcome(False, reason=describe_signal(os.WTERMSIG(status)))
    try:
        message = json.loads(b"".join(chunks).decode())
    except ValueError:
        code = os.WEXITSTATUS(status) if status is not None else "?"
        return Outcome(False, reason=f"exited with code {code} without a result")
    if message.get("ok"):
        return Outcome(True, value=message.get("value"))
    return Outcome(False, reason=message.get("reason") or "failed")


def _sentence(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
