"""The bridge's wire envelope (docs/bridge-protocol.md): one JSON object per ZeroMQ frame.

This module knows nothing about sockets or MLX: it turns bytes into a checked `Request`,
replies into bytes, and parameter values into typed Python with errors a person can act on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

PROTOCOL_VERSION = 1

# Methods the socket thread answers at once, even while a job runs.
CHEAP_METHODS = frozenset({"ping", "status", "cancel", "adapters.list", "shutdown"})
# Methods that run on the MLX worker thread, one at a time, in arrival order.
JOB_METHODS = frozenset(
    {
        "load_model",
        "describe_model",
        "tune",
        "generate",
        "adapters.load",
        "adapters.unload",
        "adapters.switch",
        "adapters.export",
        "bench.conv_stack",
        "bench.sync_cost",
    }
)


class BridgeError(Exception):
    """An error answered as an `error` envelope: a machine-readable code and one sentence."""

    def __init__(self, code: str, message: str, detail: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return body


@dataclass(frozen=True)
class Request:
    id: str
    method: str
    params: dict[str, Any]


def parse_request(frame: bytes) -> Request:
    """Decode one request frame; raises BridgeError(bad_request) naming what is wrong.

    When the frame carries a usable id, the error is raised with `request_id` set so the
    caller can still address its answer.
    """
    try:
        body = json.loads(frame.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BridgeError("bad_request", f"the request is not a UTF-8 JSON object ({error}).") from None
    if not isinstance(body, dict):
        raise BridgeError("bad_request", "the request must be a JSON object with v, id, method and params.")
    request_id = body.get("id")
    if not isinstance(request_id, str) or not request_id:
        raise BridgeError("bad_request", "the request needs a non-empty string 'id'.")
    error = _request_problem(body)
    if error:
        raise RequestError(request_id, BridgeError("bad_request", error))
    params = body.get("params")
    return Request(id=request_id, method=body["method"], params=dict(params or {}))


def _request_problem(body: Mapping[str, Any]) -> str | None:
    if body.get("v") != PROTOCOL_VERSION:
        return f"this bridge speaks protocol version {PROTOCOL_VERSION}, the request says {body.get('v')!r}; update the kernel or the bridge so that they match."
    method = body.get("method")
    if not isinstance(method, str) or method not in CHEAP_METHODS | JOB_METHODS:
        known = ", ".join(sorted(CHEAP_METHODS | JOB_METHODS))
        return f"unknown method {method!r}; the bridge knows {known}."
    params = body.get("params", {})
    if params is not None and not isinstance(params, dict):
        return f"'params' of {method} must be a JSON object."
    return None


class RequestError(Exception):
    """A malformed request that still has an id to answer to."""

    def __init__(self, request_id: str, error: BridgeError):
        super().__init__(error.message)
        self.request_id = request_id
        self.error = error


def _dumps(message: dict[str, Any]) -> bytes:
    # allow_nan=False: JSON has no NaN, and a diverged loss must not break the kernel's parser.
    return json.dumps(finite_json(message), allow_nan=False, separators=(",", ":")).encode("utf-8")


def finite_json(value: Any) -> Any:
    """NaN/inf floats become null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def event(request_id: str, name: str, data: Mapping[str, Any]) -> bytes:
    return _dumps({"v": PROTOCOL_VERSION, "id": request_id, "type": "event", "event": name, "data": dict(data)})


def result(request_id: str, data: Mapping[str, Any]) -> bytes:
    return _dumps({"v": PROTOCOL_VERSION, "id": request_id, "type": "result", "data": dict(data)})


def error(request_id: str, err: BridgeError) -> bytes:
    return _dumps({"v": PROTOCOL_VERSION, "id": request_id, "type": "error", "error": err.body()})


# --- parameter readers: every bad value names the parameter and what it should be ---------


class Params:
    """Typed access to a request's params; a wrong value is a `bad_request` naming the field."""

    def __init__(self, method: str, params: Mapping[str, Any]):
        self.method = method
        self.raw = dict(params)

    def _bad(self, name: str, want: str, got: Any) -> BridgeError:
        return BridgeError("bad_request", f"{self.method}: '{name}' must be {want}, got {json.dumps(got)}.")

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def str(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                raise BridgeError("bad_request", f"{self.method}: '{name}' is required.")
            return default
        if not isinstance(value, str):
            raise self._bad(name, "a string", value)
        return value

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise self._bad(name, "an integer", value)
        value = int(value)
        if minimum is not None and value < minimum:
            raise self._bad(name, f"an integer >= {minimum}", value)
        return value
