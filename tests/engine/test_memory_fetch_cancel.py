"""The in-memory backend's waiting fetch and cancellation."""

from __future__ import annotations

import asyncio
import time

from polyjobs.backend import NewJob
from polyjobs.backends.memory import MemoryBackend


async def test_a_fetch_cancelled_in_the_turn_an_add_wakes_it_is_cancelled() -> None:
    """An add wakes the waiting fetch in the same turn as the fetch is cancelled: the fetch
    ends cancelled and takes nothing. With ``asyncio.wait_for`` (Python 3.11) the cancellation
    was lost: the fetch took the job it was woken for."""
    backend = MemoryBackend()
    await backend.open()
    try:
        fetch = asyncio.create_task(backend.fetch("q", "tok", 1, 30.0, 10.0))
        await asyncio.sleep(0.1)
        await backend.add("q", [NewJob("x", "1", {}, time.time())])  # sets the wake-up at once
        fetch.cancel()
        await asyncio.wait([fetch], timeout=3)
        assert fetch.cancelled()
        assert (await backend.counts("q"))["waiting"] == 1
    finally:
        await backend.close()
