"""64 producers at once per deduplication mode, over 8 connections (one on ``memory://``, which
lives in one process): exactly one job survives per id, with the data the mode promises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from polyjobs import Deduplicated, Job, Queue, open_backend
from polyjobs.backend import Backend, Finish

PRODUCERS = 64
CONNECTIONS = 8


@asynccontextmanager
async def connections(url: str) -> AsyncIterator[list[Backend]]:
    async with AsyncExitStack() as stack:
        count = 1 if url.startswith("memory") else CONNECTIONS
        yield [await stack.enter_async_context(open_backend(url)) for _ in range(count)]


async def _storm(
    backends: list[Backend], queue: str, window: dict[str, Any], **options: Any
) -> tuple[list[Job], list[Deduplicated], list[float]]:
    """64 concurrent adds of data {"n": i}; their returned jobs, events and start times."""
    events: list[Deduplicated] = []
    starts: list[float] = [0.0] * PRODUCERS
    queues = []
    for backend in backends:
        q = Queue(queue, backend)
        q.on("deduplicated", events.append)
        queues.append(q)
    gate = asyncio.Event()

    async def produce(i: int) -> Job:
        await gate.wait()
        starts[i] = time.time()
        q = queues[i % len(queues)]
        return await q.add("j", {"n": i}, deduplication=window, **options)

    tasks = [asyncio.create_task(produce(i)) for i in range(PRODUCERS)]
    await asyncio.sleep(0)
    gate.set()
    return list(await asyncio.gather(*tasks)), events, starts


async def _all_jobs(queue: Queue) -> list[Job]:
    found = []
    for state in ("waiting", "delayed", "active", "completed", "failed"):
        found += await queue.jobs(state)
    return found


async def test_simple_and_throttle_keep_the_first_add(backend_url: str) -> None:
    async with connections(backend_url) as backends:
        for mode, window in (("simple", {"id": "s"}), ("throttle", {"id": "t", "ttl": 30})):
            name = f"storm-{mode}"
            jobs, events, _ = await _storm(backends, name, window)
            queue = Queue(name, backends[0])
            (survivor,) = await _all_jobs(queue)
            assert {j.id for j in jobs} == {survivor.id}, mode
            assert len(events) == PRODUCERS - 1 and {e.outcome for e in events} == {"ignored"}
            absorbed = {e.data["n"] for e in events}
            (first,) = set(range(PRODUCERS)) - absorbed  # the one add that was not absorbed
            assert survivor.data == {"n": first}, mode
            await queue.obliterate()


async def test_debounce_keeps_the_last_data_and_restarts_the_delay(backend_url: str) -> None:
    window = {"id": "d", "ttl": 30, "extend": True, "replace": True}
    async with connections(backend_url) as backends:
        jobs, events, starts = await _storm(backends, "storm-debounce", window, delay=30)
        ended = time.time()
        queue = Queue("storm-debounce", backends[0])
        (survivor,) = await _all_jobs(queue)
        assert {j.id for j in jobs} == {survivor.id}
        assert survivor.state == "delayed"
        assert len(events) == PRODUCERS - 1 and {e.outcome for e in events} == {"replaced"}
        (first,) = set(range(PRODUCERS)) - {e.data["n"] for e in events}
        last = survivor.data["n"]  # the add applied last: its data won
        assert last in range(PRODUCERS) and last != first
        # its delay counts from that add (made after it started, before the storm ended)
        assert starts[last] + 30 - 0.001 <= survivor.run_at <= ended + 30
        assert await queue.deduplication_job_id("d") == survivor.id
        await queue.obliterate()


async def test_keep_last_if_active_runs_once_more(backend_url: str) -> None:
    window = {"id": "k", "keep_last_if_active": True}
    async with connections(backend_url) as backends:
        queue = Queue("storm-keep", backends[0])
        holder = await queue.add("j", {"n": -1}, deduplication=window)
        (taken,) = await backends[0].fetch(queue.name, "tok", 1, 30.0, 0)
        assert taken.id == holder.id
        jobs, events, _ = await _storm(backends, queue.name, window)
        assert {j.id for j in jobs} == {holder.id}
        assert len(events) == PRODUCERS and {e.outcome for e in events} == {"kept-next"}
        fin = Finish(holder.id, "completed", 1, time.time(), "null")
        await backends[0].finish(queue.name, "tok", [fin], 0, 30.0)
        everything = await _all_jobs(queue)
        assert len(everything) == 2
        (follow,) = [j for j in everything if j.id != holder.id]
        assert follow.state == "waiting" and follow.data["n"] in range(PRODUCERS)
        assert await queue.deduplication_job_id("k") == follow.id
        await queue.obliterate()
