"""Run bridge jobs in-process, on the test's thread, recording their events."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable

from tunelab_bridge.service import Service
from tunelab_bridge.worker import Job, answer

_ids = itertools.count(1)


class Recorder:
    def __init__(self, service: Service):
        self.service = service
        self.events: list[tuple[str, dict[str, Any]]] = []

    def run(self, method: str, params: dict[str, Any], *, on_event: Callable[[Job, str, dict[str, Any]], None] | None = None) -> tuple[str, dict[str, Any]]:
        """(type, body): ("result", data) or ("error", error body), exactly as the wire carries them."""
        job = Job(f"t{next(_ids)}", b"test", method, params)

        def send(identity: bytes, frame: bytes) -> None:
            message = json.loads(frame)
            self.events.append((message["event"], message["data"]))
            if on_event is not None:
                on_event(job, message["event"], message["data"])

        job._send = send
        frame = answer(self.service.run_job, job)
        message = json.loads(frame)
        return message["type"], message.get("data") or message.get("error")

    def named(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == name]


def make_service(runs: Path) -> Recorder:
    return Recorder(Service(runs))
