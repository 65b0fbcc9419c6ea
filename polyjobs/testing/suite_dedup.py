"""Contract: deduplication windows (``dedup``): simple, throttle, extend, debounce,
keep-last-if-active; ``add`` returns the holder; the ``deduplicated`` event."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from polyjobs.backend import CAP_DEDUP, Backend, Finish
from polyjobs.job import Job
from polyjobs.queue import Deduplicated, Queue
from polyjobs.testing.support import ContractBase, Recorder


async def _data(job: Job) -> Any:
    return job.data


class DedupContract(ContractBase):
    async def test_simple_holds_the_id_until_the_job_ends(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_DEDUP)
        events = Recorder()
        queue.on("deduplicated", events.add)
        window = {"id": "report"}
        first = await queue.add("r", 1, deduplication=window)
        second = await queue.add("r", 2, deduplication=window)
        assert second.id == first.id and second.data == 1
        assert await queue.deduplication_job_id("report") == first.id
        (event,) = await events.wait_for(1)
        assert event == Deduplicated(queue.name, "report", first.id, "r", 2, "ignored")
        assert (await queue.counts())["waiting"] == 1
        await self.burst(queue, _data)
        assert await queue.deduplication_job_id("report") is None
        third = await queue.add("r", 3, deduplication=window)
        assert third.id != first.id and third.state == "waiting"

    async def test_throttle_holds_the_id_for_its_ttl(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_DEDUP)
        window = {"id": "t", "ttl": 1.0}
        started = time.monotonic()
        first = await queue.add("t", 1, deduplication=window)
        await self.burst(queue, _data)  # ends the job; the window stays
        again = await queue.add("t", 2, deduplication=window)
        if time.monotonic() - started < 0.9:  # (a stalled machine may have outlived the ttl)
            assert again.id == first.id
        await asyncio.sleep(max(1.05 - (time.monotonic() - started), 0))
        assert (await queue.add("t", 3, deduplication=window)).id not in (first.id, None)

    async def test_extend_restarts_the_ttl(self, backend: Backend, queue: Queue) -> None:
        """Adds every 0.1 s keep a 0.6 s window open for well over 0.6 s; it closes 0.6 s after
        the last one. (A gap the machine stretched past the ttl ends the check early.)"""
        self.require(backend, CAP_DEDUP)
        window = {"id": "e", "ttl": 0.6, "extend": True}
        opened = sent = time.monotonic()
        first = await queue.add("e", 0, deduplication=window)
        while time.monotonic() - opened < 1.2:
            await asyncio.sleep(0.1)
            previous, sent = sent, time.monotonic()
            job = await queue.add("e", 1, deduplication=window)
            # the backend saw the two adds at most this far apart (from the sending of the
            # previous one to the reply to this one), however slow either call was
            if time.monotonic() - previous < 0.5:
                assert job.id == first.id, "an absorbed add did not restart the ttl"
            elif job.id != first.id:
                break  # the gap outlived the window: nothing more to check here
        await asyncio.sleep(0.65)
        assert (await queue.add("e", 9, deduplication=window)).id != first.id

    async def test_debounce_keeps_the_last_data_and_restarts_the_delay(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_DEDUP)
        events = Recorder()
        queue.on("deduplicated", events.add)
        window = {"id": "d", "ttl": 5, "extend": True, "replace": True}
        ids = set()
        for i in range(5):
            before = time.time()
            job = await queue.add("debounced", {"n": i}, delay=0.3, deduplication=window)
            after = time.time()
            ids.add(job.id)
        (holder,) = ids
        stored = await queue.require_job(holder)
        assert (stored.state, stored.data) == ("delayed", {"n": 4})
        assert before + 0.3 <= stored.run_at <= after + 0.3  # from the last add
        assert [e.outcome for e in await events.wait_for(4)] == ["replaced"] * 4
        ran = Recorder()

        async def proc(job: Job) -> None:
            ran.add(job.data)

        await self.burst(queue, proc)
        assert ran.items == [{"n": 4}]

    async def test_keep_last_if_active_runs_once_more_with_the_newest_data(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_DEDUP)
        window = {"id": "k", "keep_last_if_active": True}
        first = await queue.add("k", 1, deduplication=window)
        assert (await queue.add("k", 2, deduplication=window)).id == first.id  # waiting: ignored
        (active,) = await backend.fetch(queue.name, "tok", 1, 30.0, 0)
        assert active.id == first.id
        for n in (3, 4, 5):
            assert (await queue.add("k", n, deduplication=window)).id == first.id
        assert (await queue.counts())["waiting"] == 0
        fin = Finish(first.id, "completed", 1, time.time(), "null")
        await backend.finish(queue.name, "tok", [fin], 0, 30.0)
        (follow,) = await queue.jobs("waiting")
        assert (follow.id != first.id, follow.data) == (True, 5)
        assert await queue.deduplication_job_id("k") == follow.id
        assert (await queue.add("k", 6, deduplication=window)).id == follow.id
        await self.burst(queue, _data)
        assert (await queue.counts())["completed"] == 2

    async def test_remove_deduplication_key(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_DEDUP)
        window = {"id": "r", "ttl": 60}
        first = await queue.add("r", 1, deduplication=window)
        assert await queue.remove_deduplication_key("r") is True
        assert await queue.remove_deduplication_key("r") is False
        second = await queue.add("r", 2, deduplication=window)
        assert second.id != first.id
        assert await queue.deduplication_job_id("r") == second.id

    async def test_removing_the_holder_frees_the_id(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_DEDUP)
        window = {"id": "x", "ttl": 60}
        first = await queue.add("x", 1, deduplication=window)
        assert await queue.remove(first.id)
        assert await queue.deduplication_job_id("x") is None
        assert (await queue.add("x", 2, deduplication=window)).id != first.id

    async def test_windows_are_per_queue_and_per_id(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_DEDUP)
        other = Queue(f"{queue.name}-w", backend)
        try:
            a = await queue.add("j", 1, deduplication={"id": "same"})
            b = await other.add("j", 2, deduplication={"id": "same"})
            c = await queue.add("j", 3, deduplication={"id": "else"})
            assert len({(a.queue_name, a.id), (b.queue_name, b.id), (c.queue_name, c.id)}) == 3
        finally:
            await other.obliterate()
