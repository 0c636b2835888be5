"""The socket thread: a ZeroMQ ROUTER that answers cheap methods at once and queues jobs.

Frames from the worker thread come back over an inproc PULL socket and leave through the
ROUTER here, so only this thread ever touches the ROUTER.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq

from . import protocol
from .curve import is_local_endpoint, load_client_keys, secure_server_socket
from .protocol import BridgeError, Params, RequestError
from .worker import Job, Worker

OUTBOX = "inproc://tunelab-bridge-outbox"


@dataclass
class ServeOptions:
    listen: str
    runs_dir: Path
    curve_secret_key: Path | None = None
    curve_clients: Path | None = None
    parent_pid: int | None = None


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Server:
    def __init__(self, options: ServeOptions, service: Any, announce: Callable[[str], None] | None = None):
        self.options = options
        self.service = service
        self.announce = announce or (lambda endpoint: print(f"TUNELAB_BRIDGE_READY {endpoint}", flush=True))
        self.context = zmq.Context()
        self.authenticator: Any = None
        self.router: zmq.Socket | None = None
        self.outbox: zmq.Socket | None = None
        self.worker = Worker(self.context, OUTBOX, service.run_job)
        self.endpoint: str | None = None
        self._stopping = False

    def _check_security(self) -> None:
        secured = self.options.curve_secret_key is not None
        if secured != (self.options.curve_clients is not None):
            raise BridgeError("bad_config", "CURVE needs both --curve-secret-key and --curve-clients.")
        if not secured and not is_local_endpoint(self.options.listen):
            raise BridgeError("bad_config", f"refusing to listen on {self.options.listen} without CURVE keys: a non-loopback endpoint needs --curve-secret-key FILE and --curve-clients DIR.")

    def bind(self) -> str:
        self._check_security()
        listen = self.options.listen
        if listen.startswith("ipc://"):
            Path(listen[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True)
        router = self.context.socket(zmq.ROUTER)
        router.linger = 500
        if self.options.curve_secret_key is not None and self.options.curve_clients is not None:
            from zmq.auth.thread import ThreadAuthenticator

            load_client_keys(self.options.curve_clients)  # a clear error for an empty/missing dir
            self.authenticator = ThreadAuthenticator(self.context)
            self.authenticator.start()
            self.authenticator.configure_curve(domain="*", location=str(self.options.curve_clients))
            secure_server_socket(router, self.options.curve_secret_key)
        try:
            router.bind(listen)
        except zmq.ZMQError as error:
            router.close(0)
            raise BridgeError("bad_config", f"cannot listen on {listen} ({error}); choose another endpoint or free it.") from None
        self.router = router
        self.outbox = self.context.socket(zmq.PULL)
        self.outbox.bind(OUTBOX)
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def serve(self) -> int:
        """Bind, announce readiness, answer until shutdown or the parent's death."""
        endpoint = self.bind()
        self.worker.start()
        self.announce(endpoint)
        assert self.router is not None and self.outbox is not None
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.outbox, zmq.POLLIN)
        next_parent_check = time.monotonic() + 1.0
        try:
            while not self._stopping:
                events = dict(poller.poll(250))
                if self.outbox in events:
                    self._drain_outbox()
                if self.router in events:
                    self._receive()
                if self.options.parent_pid and time.monotonic() >= next_parent_check:
                    next_parent_check = time.monotonic() + 1.0
                    if not _parent_alive(self.options.parent_pid):
                        print(f"tunelab bridge: parent process {self.options.parent_pid} is gone; exiting.", file=sys.stderr, flush=True)
                        break
        finally:
            self.close()
        return 0

    def _drain_outbox(self) -> None:
        assert self.router is not None and self.outbox is not None
        while True:
            try:
                frames = self.outbox.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send(frames[0], frames[1])

    def _send(self, identity: bytes, frame: bytes) -> None:
        assert self.router is not None
        try:
            self.router.send_multipart([identity, frame], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the client went away; its answers have nowhere to go

    def _receive(self) -> None:
        assert self.router is not None
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, payload = frames[0], frames[-1]
            self._handle(identity, payload)

    def _handle(self, identity: bytes, payload: bytes) -> None:
        try:
            request = protocol.parse_request(payload)
        except RequestError as error:
            self._send(identity, protocol.error(error.request_id, error.error))
            return
        except BridgeError as error:
            # No usable id: answer to the empty id so the client can at least log it.
            self._send(identity, protocol.error("", error))
            return
        try:
            if request.method in protocol.CHEAP_METHODS:
                self._send(identity, protocol.result(request.id, self._cheap(request.method, request.params)))
                if request.method == "shutdown":
                    self._stopping = True
            else:
                self.worker.submit(Job(request.id, identity, request.method, request.params))
        except BridgeError as error:
            self._send(identity, protocol.error(request.id, error))
        except Exception as error:  # noqa: BLE001 - a cheap method must not take the server down
            import traceback

            self._send(identity, protocol.error(request.id, BridgeError("internal", f"{request.method} failed unexpectedly: {error}.", traceback.format_exc())))

    def _cheap(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "ping":
            return {"pong": True, "time": time.time()}
        if method == "status":
            return self.service.status(self.worker.current_id)
        if method == "adapters.list":
            return self.service.adapters_list()
        if method == "cancel":
            target = Params("cancel", params).str("id", required=True) or ""
            return {"cancelled": self.worker.cancel(target)}
        if method == "shutdown":
            return {}
        raise BridgeError("bad_request", f"unknown method {method!r}.")

    def close(self) -> None:
        # Let a running job stop at its step boundary and save what it has.
        self.worker.stop(timeout=15.0)
        if self.outbox is not None:
            self._drain_outbox()
            self.outbox.close(0)
        if self.router is not None:
            self.router.close(500)
        if self.authenticator is not None:
            self.authenticator.stop()
        if not self.worker.alive:
            self.context.term()
        # else: MLX is stuck in one long operation; the process exits without waiting for it.
        if self.options.listen.startswith("ipc://"):
            try:
                os.unlink(self.options.listen[len("ipc://"):])
            except OSError:
                pass
