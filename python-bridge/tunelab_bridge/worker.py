"""The one thread that runs MLX: jobs are queued here and run one at a time, in arrival order.

MLX arrays, streams and the loaded model belong to this thread alone. A job talks back only
through `Job.emit`/`Job.finish`, which hand encoded frames to the socket thread over an inproc
PUSH socket owned by this thread (ZeroMQ sockets are not thread-safe).
"""

from __future__ import annotations

import queue
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import zmq

from . import protocol
from .protocol import BridgeError


@dataclass
class Job:
    id: str
    identity: bytes
    method: str
    params: dict[str, Any]
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _send: Callable[[bytes, bytes], None] | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def emit(self, name: str, data: Mapping[str, Any]) -> None:
        if self._send is not None:
            self._send(self.identity, protocol.event(self.id, name, data))


Handler = Callable[[Job], Mapping[str, Any]]


class Worker:
    """A FIFO of jobs drained by one daemon thread that calls `handler(job)` for each."""

    def __init__(self, context: zmq.Context, outbox: str, handler: Handler):
        self._context = context
        self._outbox = outbox
        self._handler = handler
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: dict[str, Job] = {}
        self.current: Job | None = None
        self._thread = threading.Thread(target=self._run, name="tunelab-mlx", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._lock:
            if job.id in self._pending:
                raise BridgeError("bad_request", f"request id {job.id!r} is already running or queued; use a fresh id per request.")
            self._pending[job.id] = job
        self._queue.put(job)

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            job = self._pending.get(request_id)
        if job is None:
            return False
        job.cancel_event.set()
        return True

    @property
    def current_id(self) -> str | None:
        job = self.current
        return job.id if job else None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            for job in self._pending.values():
                job.cancel_event.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        push = self._context.socket(zmq.PUSH)
        push.linger = 1000
        push.connect(self._outbox)

        def send(identity: bytes, frame: bytes) -> None:
            push.send_multipart([identity, frame])

        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                job._send = send
                self.current = job
                try:
                    frame = self._answer(job)
                finally:
                    # Done before the answer leaves, so a client that reads it sees an idle bridge.
                    self.current = None
                    with self._lock:
                        self._pending.pop(job.id, None)
                send(job.identity, frame)
        finally:
            push.close()

    def _answer(self, job: Job) -> bytes:
        return answer(self._handler, job)


def answer(handler: Handler, job: Job) -> bytes:
    """Run one job and encode its single `result` or `error` frame."""
    if job.cancelled:
        return protocol.error(job.id, BridgeError("cancelled", f"{job.method} was cancelled before it started."))
    try:
        return protocol.result(job.id, handler(job))
    except BridgeError as error:
        return protocol.error(job.id, error)
    except Exception as error:  # noqa: BLE001 - every failure must answer its request
        message = f"{job.method} failed unexpectedly: {type(error).__name__}: {error}".rstrip(".") + "."
        return protocol.error(job.id, BridgeError("internal", message, traceback.format_exc()))
