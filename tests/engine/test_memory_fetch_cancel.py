"""Cancelling a waiting fetch: the in-memory backend's, and a worker whose backend loses the
cancellation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from polyjobs import Queue, Worker
from polyjobs.backend import JobRecord, NewJob
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


class _LosesACancel(MemoryBackend):
    """A waiting fetch that drops its cancellation and returns what it finds, as
    ``asyncio.wait_for`` on Python 3.11 can when the cancellation lands as its wait ends."""

    async def fetch(
        self, queue: str, token: str, limit: int, lease: float, block: float
    ) -> list[JobRecord]:
        try:
            await asyncio.sleep(block)
        except asyncio.CancelledError:
            pass
        return await super().fetch(queue, token, limit, lease, 0)


async def test_a_worker_cancelled_while_its_backend_loses_the_cancellation_stops() -> None:
    """The worker's task is cancelled while its fetch waits; the fetch swallows the
    cancellation and returns a job. The worker stops (the job handed back) instead of fetching
    into its closing task group for ever."""
    backend = _LosesACancel()
    await backend.open()
    ran: list[Any] = []

    async def processor(job: Any) -> None:
        ran.append(job.id)

    try:
        worker = Worker("q", processor, backend, concurrency=1, block=5.0)
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(0.2)  # the fetch waits
        await Queue("q", backend).add("x", {})
        run.cancel()
        await asyncio.wait([run], timeout=3)
        assert run.done() and ran == []
        counts = await backend.counts("q")
        assert counts["waiting"] == 1 and counts["active"] == 0
    finally:
        await backend.close()
