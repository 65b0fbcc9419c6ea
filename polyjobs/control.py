"""Commands to every process sharing a backend: ``stop --all`` and what the Runtime does with it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from polyjobs.backend import ControlMessage, controller

if TYPE_CHECKING:
    from polyjobs.backend import Backend

STOP = "stop"


async def request_stop_all(backend: Backend, grace: float, requested_by: str) -> ControlMessage:
    """Ask every Runtime on this backend, on any machine, to stop within ``grace`` seconds."""
    payload = json.dumps({"grace": grace, "requested_by": requested_by})
    return await controller(backend).send_control(STOP, payload)


async def wait_until_no_workers(
    backend: Backend, queues: Iterable[str], timeout: float, poll: float = 0.2
) -> list[str]:
    """Wait until no worker of ``queues`` is in the registry; return the ids still there."""
    names = list(queues)
    deadline = time.monotonic() + timeout
    while True:
        left = [w.id for name in names for w in await backend.list_workers(name)]
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(poll)


def stop_grace(message: ControlMessage, default: float) -> float:
    """The grace period a ``stop`` message asks for."""
    try:
        payload: Any = json.loads(message.payload_json)
        return float(payload.get("grace", default))
    except (ValueError, TypeError, AttributeError):
        return default
