"""Contract: listing, draining, cleaning, removing, retrying, obliterating; shared storage."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from polyjobs.backend import CAP_DURABLE, CAP_SHARED, Backend
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase


async def _ok(job: Job) -> Any:
    return job.data


async def _fail(job: Job) -> None:
    raise ValueError("always")


class AdminContract(ContractBase):
    async def test_jobs_paging_in_fetch_order(self, queue: Queue) -> None:
        ids = [(await queue.add("p", i)).id for i in range(10)]
        assert [j.id for j in await queue.jobs("waiting")] == ids
        assert [j.id for j in await queue.jobs("waiting", 0, 3)] == ids[:4]
        assert [j.id for j in await queue.jobs("waiting", 4, 6)] == ids[4:7]
        assert [j.id for j in await queue.jobs("waiting", 7, -1)] == ids[7:]
        assert [j.id for j in await queue.jobs("waiting", -2, -1)] == ids[-2:]
        assert await queue.jobs("waiting", 20, 30) == []

    async def test_finished_jobs_list_newest_first(self, queue: Queue) -> None:
        ids = [(await queue.add("p", i)).id for i in range(5)]
        await self.burst(queue, _ok, concurrency=1)
        assert [j.id for j in await queue.jobs("completed")] == ids[::-1]
        assert [j.id for j in await queue.jobs("completed", 0, 1)] == ids[::-1][:2]
        assert [j.id for j in await queue.jobs("completed", 2, 3)] == ids[::-1][2:4]
        failed = [(await queue.add("f", i)).id for i in range(3)]
        await self.burst(queue, _fail, concurrency=1)
        assert [j.id for j in await queue.jobs("failed")] == failed[::-1]

    async def test_active_jobs_list_by_start_time(self, queue: Queue, backend: Backend) -> None:
        ids = [(await queue.add("a", i)).id for i in range(3)]
        for _ in ids:
            await backend.fetch(queue.name, "tok", 1, 30.0, 0)
            await asyncio.sleep(0.01)
        assert [j.id for j in await queue.jobs("active")] == ids

    async def test_drain(self, queue: Queue) -> None:
        for i in range(3):
            await queue.add("w", i)
        for i in range(2):
            await queue.add("d", i, delay=60)
        assert await queue.drain() == 3
        counts = await queue.counts()
        assert (counts["waiting"], counts["delayed"]) == (0, 2)
        await queue.add("w", 9)
        assert await queue.drain(delayed=True) == 3
        counts = await queue.counts()
        assert (counts["waiting"], counts["delayed"]) == (0, 0)

    async def test_clean_by_grace_and_limit(self, queue: Queue) -> None:
        old = [(await queue.add("c", i)).id for i in range(3)]
        await self.burst(queue, _ok, concurrency=1)
        await asyncio.sleep(0.4)
        new = [(await queue.add("c", i)).id for i in range(2)]
        await self.burst(queue, _ok, concurrency=1)
        assert await queue.clean("completed", grace=30) == []
        removed = await queue.clean("completed", grace=0.3, limit=2)
        assert len(removed) == 2 and set(removed) <= set(old)
        assert sorted(await queue.clean("completed", grace=0.3)) == sorted(set(old) - set(removed))
        assert sorted(j.id for j in await queue.jobs("completed")) == sorted(new)
        assert sorted(await queue.clean("completed", grace=0)) == sorted(new)
        assert (await queue.counts())["completed"] == 0

    async def test_clean_limit_removes_the_oldest_first(self, queue: Queue) -> None:
        ids = [(await queue.add("c", i)).id for i in range(4)]
        await self.burst(queue, _ok, concurrency=1)
        removed = await queue.clean("completed", grace=0, limit=2)
        assert sorted(removed) == sorted(ids[:2])

    async def test_clean_other_states(self, queue: Queue, backend: Backend) -> None:
        failed = (await queue.add("f", None)).id
        await self.burst(queue, _fail)
        active = (await queue.add("a", None)).id
        await backend.fetch(queue.name, "tok", 1, 30.0, 0)
        waiting = (await queue.add("w", None)).id
        delayed = (await queue.add("d", None, delay=60)).id
        await asyncio.sleep(0.01)
        assert await queue.clean("failed", 0) == [failed]
        assert await queue.clean("active", 0) == []
        assert await queue.clean("waiting", 0) == [waiting]
        assert await queue.clean("delayed", 0) == [delayed]
        counts = await queue.counts()
        assert counts["active"] == 1 and await self.state_of(queue, active) == "active"
        assert sum(counts[s] for s in ("waiting", "delayed", "completed", "failed")) == 0

    async def test_remove(self, queue: Queue, backend: Backend) -> None:
        waiting = await queue.add("w", None)
        await backend.add_log(queue.name, waiting.id, "a line", 10)
        assert await queue.remove(waiting.id) is True
        assert await queue.get_job(waiting.id) is None
        assert await queue.logs(waiting.id) == []
        assert await queue.remove(waiting.id) is False
        assert await queue.remove("never-existed") is False
        delayed = await queue.add("d", None, delay=60)
        assert await queue.remove(delayed.id) is True
        active = await queue.add("a", None)
        await backend.fetch(queue.name, "tok", 1, 30.0, 0)
        assert await queue.remove(active.id) is False
        assert await self.state_of(queue, active.id) == "active"
        assert await queue.counts() == {
            "waiting": 0,
            "active": 1,
            "delayed": 0,
            "waiting-children": 0,
            "completed": 0,
            "failed": 0,
            "paused": False,
        }

    async def test_removed_job_id_can_be_added_again(self, queue: Queue) -> None:
        await queue.add("x", 1, job_id="reuse")
        assert await queue.remove("reuse") is True
        again = await queue.add("x", 2, job_id="reuse")
        assert again.data == 2 and (await queue.counts())["waiting"] == 1

    async def test_retry_a_failed_job(self, queue: Queue) -> None:
        calls: list[int] = []

        async def proc(job: Job) -> str:
            calls.append(job.attempts_made)
            if len(calls) <= 2:
                raise ValueError("not yet")
            return "third time"

        job = await queue.add("r", None, attempts=2)
        await self.burst(queue, proc)
        failed = await queue.require_job(job.id)
        assert failed.state == "failed" and failed.attempts_made == 2
        assert await queue.retry(job.id) is True
        back = await queue.require_job(job.id)
        assert (back.state, back.attempts_made) == ("waiting", 0)
        assert await queue.retry(job.id) is False  # not failed any more
        await self.burst(queue, proc)
        assert calls == [0, 1, 0]
        done = await queue.require_job(job.id)
        assert (done.state, done.returnvalue) == ("completed", "third time")
        assert await queue.retry(job.id) is False
        assert await queue.retry("no-such-job") is False

    async def test_retry_failed(self, queue: Queue) -> None:
        ids = [(await queue.add("f", i)).id for i in range(3)]
        await queue.add("ok", None)

        seen: set[str] = set()

        async def proc(job: Job) -> None:
            first_run = job.id not in seen
            seen.add(job.id)
            if job.name == "f" and first_run:
                raise ValueError("first run fails")

        await self.burst(queue, proc)
        assert (await queue.counts())["failed"] == 3
        assert await asyncio.wait_for(queue.retry_failed(), 5) == 3
        counts = await queue.counts()
        assert (counts["failed"], counts["waiting"]) == (0, 3)
        await self.burst(queue, proc)
        assert [await self.state_of(queue, i) for i in ids] == ["completed"] * 3
        assert await asyncio.wait_for(queue.retry_failed(), 5) == 0

    async def test_obliterate(self, queue: Queue, backend: Backend) -> None:
        job = await queue.add("x", None)
        await queue.add("d", None, delay=60)
        await backend.add_log(queue.name, job.id, "line", 10)
        await queue.upsert_schedule("tick", every=60)
        await queue.pause()
        await queue.obliterate()
        assert await queue.get_job(job.id) is None
        assert await queue.logs(job.id) == []
        assert await queue.schedules() == []
        assert await queue.is_paused() is False
        counts = await queue.counts()
        assert sum(counts[s] for s in ("waiting", "active", "delayed", "completed", "failed")) == 0
        assert queue.name not in await backend.queues()
        fresh = await queue.add("y", None)
        assert await self.state_of(queue, fresh.id) == "waiting"

    async def test_reads_do_not_create_a_queue(self, backend: Backend) -> None:
        name = f"contract-unused-{time.time_ns()}"
        queue = Queue(name, backend)
        try:
            await queue.counts()
            await queue.get_job("1")
            await queue.jobs("waiting")
            await queue.schedules()
            await queue.workers()
            await queue.is_paused()
            assert name not in await backend.queues()
        finally:
            await backend.obliterate(name)

    # -- capabilities ----------------------------------------------------------------------
    async def test_shared_storage_is_seen_by_a_second_connection(
        self, queue: Queue, backend: Backend
    ) -> None:
        self.require(backend, CAP_SHARED)
        job = await queue.add("shared", {"v": 1})
        async with self.open_other() as other:
            got = await other.fetch(queue.name, "other-process", 1, 5.0, 0)
            assert [r.id for r in got] == [job.id]
            assert got[0].data == {"v": 1}
        assert await self.state_of(queue, job.id) == "active"

    async def test_shared_blocked_fetch_is_woken_by_another_connection(
        self, queue: Queue, backend: Backend
    ) -> None:
        self.require(backend, CAP_SHARED)
        fetch = asyncio.create_task(backend.fetch(queue.name, "tok", 1, 5.0, 5.0))
        await asyncio.sleep(0.05)
        async with self.open_other() as other:
            began = time.monotonic()
            job = await Queue(queue.name, other).add("wake", None)
            got = await asyncio.wait_for(fetch, 6.0)
        assert [r.id for r in got] == [job.id]
        assert time.monotonic() - began < 2.0

    async def test_durable_jobs_are_read_by_a_new_connection(
        self, queue: Queue, backend: Backend
    ) -> None:
        self.require(backend, CAP_DURABLE)
        job = await queue.add("durable", {"v": 2})
        async with self.open_other() as other:
            stored = await other.get_job(queue.name, job.id)
        assert stored is not None and stored.data == {"v": 2}
