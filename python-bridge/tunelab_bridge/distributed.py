"""A `tune` as data-parallel training over several processes, on MLX's own runtime.

The bridge starts `mlx.launch` (ring backend by default: TCP, every CPU build; or MPI, JACCL,
NCCL) with `--processes N` local ranks or the machines of a `--hosts` hostfile, each rank running
`python -m tunelab_bridge.rank` (rank.py) with the bridge's own Python. The run goes to every rank
on standard input, which mlx.launch broadcasts; rank 0's events come back on its standard output
and become this job's events, so the live curve, interrupt, checkpoints, resume and the summary
are the one-process ones. A rank that dies ends the others (mlx.launch stops the group): the call
fails with a sentence naming it, and the last checkpoint, written atomically by rank 0, is kept.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import cpu
from .options import TuneOptions, as_wire
from .protocol import BridgeError
from .rank import ERROR, EVENT, RESULT

Emit = Callable[[str, Mapping[str, Any]], None]
# mlx.launch's words for a rank that did not finish (its log_warning lines).
_RANK_LOST = re.compile(r"Node with rank (\d+) (was killed|exited with code (-?\d+))")


def _launcher() -> str:
    launcher = Path(sys.executable).with_name("mlx.launch")
    if not launcher.is_file():
        raise BridgeError("bad_config", f"mlx.launch is not in the bridge's environment ({launcher}); run npm run setup.")
    return str(launcher)


def _command(backend: str, hostfile: Optional[Path], ranks: int) -> List[str]:
    command = [_launcher(), "--backend", backend, "--python", sys.executable]
    if hostfile is not None:
        command += ["--hostfile", str(hostfile)]
    else:
        command += ["--hosts", "127.0.0.1", "-n", str(ranks)]
    # Ranks on one machine share its cores: each gets its share of one thread budget (cpu.py).
    threads = max(1, cpu.usable_cores() // ranks) if hostfile is None else None
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env[cpu.THREADS_ENV] = str(threads)
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    return [*command, "--", "-m", "tunelab_bridge.rank"]


def _hostfile(options: TuneOptions, work: Path) -> Optional[Path]:
    """The --hosts text as a file mlx.launch reads, after checking that it is a hostfile."""
    if not options.hosts:
        return None
    source, text = options.hosts.get("source", "hosts"), options.hosts["text"]
    try:
        hosts = json.loads(text)
    except ValueError as error:
        raise BridgeError("bad_config", f"--hosts {source} is not JSON ({error}); give an mlx.launch hostfile, a list of {{\"ssh\", \"ips\"}} objects.") from None
    entries = hosts.get("hosts") if isinstance(hosts, dict) else hosts
    if not isinstance(entries, list) or not entries:
        raise BridgeError("bad_config", f"--hosts {source} lists no hosts; give an mlx.launch hostfile, a list of {{\"ssh\", \"ips\"}} objects.")
    path = work / "hosts.json"
    path.write_text(text, encoding="utf-8")
    return path


def _ranks(options: TuneOptions) -> int:
    if options.hosts:
        hosts = json.loads(options.hosts["text"])
        return len(hosts.get("hosts") if isinstance(hosts, dict) else hosts)
    return options.processes


class _Output:
    """Rank 0's lines from mlx.launch's standard output, read on a thread of their own."""

    def __init__(self, stream: Any, emit: Emit):
        self.result: Optional[Dict[str, Any]] = None
        self.error: Optional[Dict[str, Any]] = None
        self.last_step = 0
        self._emit = emit
        self._thread = threading.Thread(target=self._read, args=(stream,), name="tunelab-ranks", daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            kind, _, body = line.partition(" ")
            if kind == EVENT:
                message = json.loads(body)
                if message["event"] == "checkpoint":
                    self.last_step = int(message["data"]["step"])
                self._emit(message["event"], message["data"])
            elif kind == RESULT:
                self.result = json.loads(body)
            elif kind == ERROR:
                self.error = json.loads(body)

    def join(self) -> None:
        self._thread.join(timeout=10)


def launch(task: str, payload: Mapping[str, Any], *, ranks: int, backend: str, hostfile: Optional[Path], work: Path, emit: Emit, cancelled: Callable[[], bool]) -> tuple[int, _Output, str]:
    """Runs `task` (rank.py's TASKS) on `ranks` processes; (exit code, rank 0's output, stderr)."""
    command = _command(backend, hostfile, ranks)
    emit("phase", {"name": "preparing", "detail": f"starting {ranks} processes ({backend})"})
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=work, start_new_session=True)
    stderr: List[bytes] = []
    threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True).start()
    output = _Output(process.stdout, emit)
    process.stdin.write((json.dumps({"task": task, "backend": backend, **payload}) + "\n").encode("utf-8"))
    process.stdin.flush()
    sent_cancel = False
    while process.poll() is None:
        if cancelled() and not sent_cancel:
            process.stdin.write(b"cancel\n")
            process.stdin.flush()
            sent_cancel = True
        time.sleep(0.05)
    output.join()
    return process.returncode, output, b"".join(stderr).decode("utf-8", "replace")


def run(options: TuneOptions, model_path: str, runs_dir: Path, emit: Emit, cancelled: Callable[[], bool], blas: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The TuneResult of `options` trained by the group (evals are the caller's: ranks skip them)."""
    ranks = _ranks(options)
    with tempfile.TemporaryDirectory(prefix="tunelab-ranks-") as work:
        payload = {"options": {**as_wire(options), "eval_prompts": [], "processes": 1, "hosts": None}, "model_path": model_path, "runs_dir": str(runs_dir), "blas": blas}
        code, output, stderr = launch("tune", payload, ranks=ranks, backend=options.backend, hostfile=_hostfile(options, Path(work)), work=Path(work), emit=emit, cancelled=cancelled)
        return _outcome(code, output, stderr, options, ranks)


def _outcome(code: int, output: _Output, stderr: str, options: TuneOptions, ranks: int) -> Dict[str, Any]:
    if output.result is not None:
        return {**output.result, "processes": ranks, "backend": options.backend}
    if output.error is not None:
        raise BridgeError(str(output.error.get("code", "internal")), str(output.error.get("message", "a rank failed")), output.error.get("detail"))
    lost = _RANK_LOST.search(stderr)
    who = f"rank {lost.group(1)} {'was killed' if lost.group(3) is None else _exit_words(int(lost.group(3)))}" if lost else f"the group ended ({_exit_words(code)})"
    kept = f"the checkpoint at step {output.last_step} is kept; --resume with the same --name continues from it" if output.last_step else "no checkpoint was written yet (--save-every sets how often)"
    raise BridgeError("rank_failed", f"distributed training stopped: {who}; {kept}.", stderr[-4000:] or None)


def _exit_words(code: int) -> str:
    if code < 0:
        try:
            return f"died of {signal.Signals(-code).name}"
        except ValueError:
            return f"died of signal {-code}"
    return f"exited with code {code}"
