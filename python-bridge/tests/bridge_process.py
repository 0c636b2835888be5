"""Start `python -m tunelab_bridge serve` as a real child process and talk to it over ZeroMQ."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class BridgeProcess:
    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        environment = dict(os.environ)
        environment["PYTHONPATH"] = str(PACKAGE_ROOT) + os.pathsep + environment.get("PYTHONPATH", "")
        environment.setdefault("OPENBLAS_NUM_THREADS", "1")
        environment.pop("TUNELAB_BLAS", None)  # conftest's choice for in-process MLX; a bridge chooses its own
        environment.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunelab_bridge", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            text=True,
        )
        self.endpoint: str | None = None

    def wait_ready(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("TUNELAB_BRIDGE_READY "):
                self.endpoint = line.split(" ", 1)[1].strip()
                return self.endpoint
        raise AssertionError(f"bridge did not become ready: {self.stderr_text()}")

    def stderr_text(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Client:
    """A DEALER, as the kernel uses, with a blocking request/stream helper."""

    _ids = itertools.count(1)

    def __init__(self, endpoint: str, configure=None):
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        if configure is not None:
            configure(self.socket)
        self.socket.connect(endpoint)
        self.inbox: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, *, request_id: str | None = None) -> str:
        request_id = request_id or f"c{next(self._ids)}"
        self.socket.send(json.dumps({"v": 1, "id": request_id, "method": method, "params": params or {}}).encode())
        return request_id

    def receive(self, timeout: float) -> dict[str, Any] | None:
        if self.socket.poll(int(timeout * 1000)):
            return json.loads(self.socket.recv())
        return None

    def collect(self, request_id: str, timeout: float = 120.0, on_event=None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(final message, events) for request_id; other ids' messages are kept in inbox."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        early = [m for m in self.inbox if m["id"] == request_id]
        self.inbox = [m for m in self.inbox if m["id"] != request_id]
        while time.monotonic() < deadline:
            message = early.pop(0) if early else self.receive(min(1.0, max(0.01, deadline - time.monotonic())))
            if message is None:
                continue
            if message["id"] != request_id:
                self.inbox.append(message)
                continue
            if message["type"] == "event":
                events.append(message)
                if on_event is not None:
                    on_event(message)
                continue
            return message, events
        raise AssertionError(f"no answer to {request_id} within {timeout}s")

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 120.0) -> dict[str, Any]:
        message, _ = self.collect(self.send(method, params), timeout)
        return message

    def close(self) -> None:
        self.socket.close(0)
