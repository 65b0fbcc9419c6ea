"""Contract: adding jobs, the order workers get them in, delays, dedupe, fetch blocking."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from polyjobs.backend import Backend, Finish
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase, Recorder


class AddingContract(ContractBase):
    async def _order(self, queue: Queue) -> list[Any]:
        seen: list[Any] = []

        async def proc(job: Job) -> None:
            seen.append(job.data)

        await self.burst(queue, proc, concurrency=1)
        return seen

    async def test_fifo_order(self, queue: Queue) -> None:
        for i in range(10):
            await queue.add("fifo", i)
        assert await self._order(queue) == list(range(10))

    async def test_lifo_jobs_come_first_newest_first(self, queue: Queue) -> None:
        for i in range(3):
            await queue.add("plain", f"a{i}")
        for i in range(3):
            await queue.add("lifo", f"b{i}", lifo=True)
        assert await self._order(queue) == ["b2", "b1", "b0", "a0", "a1", "a2"]

    async def test_priority_order_fifo_within_level(self, queue: Queue) -> None:
        priorities = [3, 1, 0, 2, 1, 3, 0, 2, 1, 0]
        for i, priority in enumerate(priorities):
            await queue.add("prio", i, priority=priority)
        expected = [i for _, i in sorted((p, i) for i, p in enumerate(priorities))]
        assert [j.data for j in await queue.jobs("waiting")] == expected
        assert await self._order(queue) == expected

    async def test_extreme_priorities_keep_their_order(
        self, queue: Queue, backend: Backend
    ) -> None:
        top = 2**21
        for data, priority in (("max", top), ("zero", 0), ("almost", top - 1), ("mid", 1000)):
            await queue.add("x", data, priority=priority)
        await queue.add("x", "max-lifo", priority=top, lifo=True)
        fetched = await backend.fetch(queue.name, "tok", 10, 5.0, 0)
        assert [r.data for r in fetched] == ["zero", "mid", "almost", "max-lifo", "max"]

    async def test_jobs_due_at_the_same_time_keep_their_order(
        self, queue: Queue, backend: Backend
    ) -> None:
        jobs = await queue.add_bulk([("same", i, {"delay": 0.2}) for i in range(12)])
        assert len({j.run_at for j in jobs}) == 1
        assert [j.data for j in await queue.jobs("delayed")] == list(range(12))
        await asyncio.sleep(0.25)
        fetched = await backend.fetch(queue.name, "tok", 20, 5.0, 0)
        assert [r.data for r in fetched] == list(range(12))

    async def test_retried_and_promoted_jobs_keep_their_priority(
        self, queue: Queue, backend: Backend
    ) -> None:
        urgent = await queue.add("x", "urgent", priority=1, attempts=2)
        await queue.add("x", "low-1", priority=5)
        await queue.add("x", "low-2", priority=5)
        soon = await queue.add("x", "promoted", priority=0, delay=60)
        assert [r.id for r in await backend.fetch(queue.name, "tok", 1, 5.0, 0)] == [urgent.id]
        retry = Finish(urgent.id, "retry", 1, time.time(), failed_reason="once", retry_at=0.0)
        assert (await backend.finish(queue.name, "tok", [retry], 0, 5.0)).lost == []
        assert await queue.promote(soon.id) is True
        fetched = await backend.fetch(queue.name, "tok", 10, 5.0, 0)
        assert [r.data for r in fetched] == ["promoted", "urgent", "low-1", "low-2"]

    async def test_an_immediate_retry_keeps_its_priority_turn(self, queue: Queue) -> None:
        order: list[str] = []

        async def proc(job: Job) -> None:
            order.append(job.data)
            if job.data == "urgent" and job.attempts_made == 0:
                raise ValueError("once")

        await queue.add("x", "first", priority=0)
        await queue.add("x", "urgent", priority=1, attempts=2)  # no backoff: back at once
        await queue.add("x", "low-1", priority=5)
        await queue.add("x", "low-2", priority=5)
        await self.burst(queue, proc, concurrency=1)
        assert order == ["first", "urgent", "urgent", "low-1", "low-2"]

    async def test_waiting_list_is_fetch_order(self, queue: Queue, backend: Backend) -> None:
        await queue.add("x", 0, priority=2)
        await queue.add("x", 1)
        await queue.add("x", 2, lifo=True)
        await queue.add("x", 3, priority=1)
        await queue.add("x", 4, priority=1, lifo=True)  # first of its level, not of all
        listed = [j.id for j in await queue.jobs("waiting")]
        fetched = await backend.fetch(queue.name, "tok", 10, 5.0, 0)
        assert [r.id for r in fetched] == listed
        assert [r.data for r in fetched] == [2, 1, 4, 3, 0]
        assert all(r.state == "active" for r in fetched)

    async def test_delay_is_never_early(self, queue: Queue) -> None:
        started = Recorder()

        async def proc(job: Job) -> None:
            started.add((job.data, time.time(), job.timestamp))

        job = await queue.add("later", "d", delay=0.5)
        await queue.add("now", "n")
        assert job.state == "delayed"
        assert (await queue.counts())["delayed"] == 1
        await self.burst(queue, proc)
        by_data = {d: (t, ts) for d, t, ts in started.items}
        assert [d for d, _, _ in started.items] == ["n", "d"]
        ran_at, created = by_data["d"]
        assert ran_at >= created + 0.5, "a delayed job ran early"
        assert ran_at < created + 0.5 + 1.5, "a delayed job ran far too late"

    async def test_delay_accepts_timedelta_and_lists_by_due_time(self, queue: Queue) -> None:
        from datetime import timedelta

        await queue.add("c", "c", delay=30)
        await queue.add("a", "a", delay=timedelta(seconds=10))
        await queue.add("b", "b", delay=20.0)
        assert [j.data for j in await queue.jobs("delayed")] == ["a", "b", "c"]
        job = (await queue.jobs("delayed"))[0]
        assert 9.5 <= job.run_at - job.timestamp <= 10.5

    async def test_promote_runs_a_delayed_job_now(self, queue: Queue) -> None:
        job = await queue.add("later", 1, delay=60)
        assert await queue.promote(job.id) is True
        assert await self.state_of(queue, job.id) == "waiting"
        assert await queue.promote(job.id) is False  # no longer delayed
        await self.burst(queue, lambda j: j.data, within=5)
        assert await self.state_of(queue, job.id) == "completed"

    async def test_due_delayed_job_takes_its_priority_place(
        self, queue: Queue, backend: Backend
    ) -> None:
        for i in range(3):
            await queue.add("low", i, priority=5)
        urgent = await queue.add("urgent", None, priority=1, delay=0.2)
        await asyncio.sleep(0.25)
        fetched = await backend.fetch(queue.name, "tok", 10, 5.0, 0)
        assert [r.data for r in fetched] == [None, 0, 1, 2]
        assert fetched[0].id == urgent.id

    async def test_finished_job_has_its_times(self, queue: Queue) -> None:
        job = await queue.add("t", {"n": 1})
        await self.burst(queue, lambda j: j.data["n"] + 1)
        done = await queue.require_job(job.id)
        assert (done.state, done.returnvalue, done.attempts_made) == ("completed", 2, 1)
        assert done.processed_on is not None and done.finished_on is not None
        assert job.timestamp <= done.processed_on <= done.finished_on <= time.time()

    async def test_job_id_dedupe(self, queue: Queue) -> None:
        first = await queue.add("dup", {"v": 1}, job_id="order-7")
        again = await queue.add("dup", {"v": 2}, job_id="order-7")
        assert first.id == again.id == "order-7"
        assert again.data == {"v": 1}
        assert (await queue.counts())["waiting"] == 1
        await self.burst(queue, lambda j: j.data)
        # while the job is kept, its id still dedupes
        late = await queue.add("dup", {"v": 3}, job_id="order-7")
        assert late.state == "completed" and late.data == {"v": 1}
        counts = await queue.counts()
        assert (counts["waiting"], counts["completed"]) == (0, 1)

    async def test_numeric_ids_are_distinct_and_kept_apart_from_custom_ids(
        self, queue: Queue
    ) -> None:
        jobs = [await queue.add("n", i) for i in range(5)]
        custom = await queue.add("c", "c", job_id="custom")
        ids = [j.id for j in jobs]
        assert len(set(ids)) == 5 and custom.id == "custom"
        assert (await queue.counts())["waiting"] == 6

    async def test_numeric_ids_never_collide_with_custom_ids(self, queue: Queue) -> None:
        await queue.add("custom", "one", job_id="1")
        await queue.add("custom", "two", job_id="2")
        auto = [await queue.add("auto", i) for i in range(3)]
        assert all(j.state == "waiting" for j in auto)
        assert {j.id for j in auto}.isdisjoint({"1", "2"}) and len({j.id for j in auto}) == 3
        assert (await queue.require_job("1")).data == "one"
        assert [(await queue.require_job(j.id)).data for j in auto] == [0, 1, 2]
        assert (await queue.counts())["waiting"] == 5

    async def test_unusual_ids_and_data_round_trip(self, queue: Queue) -> None:
        data = {
            "text": 'héllo ☃ 🎉 "quoted" \\ \n',
            "big": 2**53 + 1,
            "small": -(2**40),
            "float": 0.1,
            "nested": {"list": [True, False, None, [], {}]},
        }
        for job_id in ("a:b", "{braces}", "ü-1", "path/with?query#frag", "*", "x" * 256):
            job = await queue.add("odd", data, job_id=job_id)
            assert job.id == job_id
            stored = await queue.require_job(job_id)
            assert stored.data == data and stored.name == "odd"
            assert (await queue.add("odd", None, job_id=job_id)).data == data
        assert (await queue.counts())["waiting"] == 6

    async def test_add_bulk(self, queue: Queue) -> None:
        jobs = await queue.add_bulk(
            [
                {"name": "a", "data": 1},
                ("b", 2),
                ("c", 3, {"priority": 1}),
                {"name": "d", "data": 4, "options": {"delay": 30}},
                ("e", 5, {"job_id": "bulk-e"}),
            ]
        )
        assert [j.name for j in jobs] == ["a", "b", "c", "d", "e"]
        assert len({j.id for j in jobs}) == 5 and jobs[4].id == "bulk-e"
        counts = await queue.counts()
        assert (counts["waiting"], counts["delayed"]) == (4, 1)
        assert [j.data for j in await queue.jobs("waiting")] == [1, 2, 5, 3]
        assert await queue.add_bulk([]) == []

    async def test_add_bulk_dedupes_within_the_batch(self, queue: Queue) -> None:
        jobs = await queue.add_bulk([("a", 1, {"job_id": "twin"}), ("b", 2, {"job_id": "twin"})])
        assert [(j.id, j.name, j.data) for j in jobs] == [("twin", "a", 1), ("twin", "a", 1)]
        assert (await queue.counts())["waiting"] == 1

    async def test_get_job_returns_stored_fields(self, queue: Queue) -> None:
        added = await queue.add("mail", {"to": "a@b.c", "n": [1, 2.5, None]}, attempts=4)
        job = await queue.get_job(added.id)
        assert job is not None
        assert (job.id, job.name, job.state) == (added.id, "mail", "waiting")
        assert job.data == {"to": "a@b.c", "n": [1, 2.5, None]}
        assert job.opts["attempts"] == 4 and job.attempts_made == 0
        assert abs(job.timestamp - time.time()) < 5
        assert job.processed_on is None and job.finished_on is None
        assert await queue.get_job("no-such-job") is None

    async def test_fetch_blocks_until_an_add_wakes_it(self, queue: Queue, backend: Backend) -> None:
        fetch = asyncio.create_task(backend.fetch(queue.name, "tok", 1, 5.0, 5.0))
        await asyncio.sleep(0.05)
        assert not fetch.done()
        began = time.monotonic()
        job = await queue.add("wake", 1)
        got = await asyncio.wait_for(fetch, 5.0)
        assert [r.id for r in got] == [job.id]
        assert time.monotonic() - began < 2.5, "an add did not wake a blocked fetch (block 5 s)"

    async def test_fetch_blocks_for_at_most_block_seconds(
        self, queue: Queue, backend: Backend
    ) -> None:
        began = time.monotonic()
        got = await asyncio.wait_for(backend.fetch(queue.name, "tok", 1, 5.0, 0.3), 5.0)
        took = time.monotonic() - began
        assert got == []
        # ended by its block, well before the lease (5 s); the bound allows a loaded machine
        assert 0.2 <= took < 3.0

    async def test_fetch_wakes_when_a_delayed_job_falls_due(
        self, queue: Queue, backend: Backend
    ) -> None:
        job = await queue.add("later", 1, delay=0.3)
        got = await asyncio.wait_for(backend.fetch(queue.name, "tok", 1, 5.0, 5.0), 6.0)
        assert [r.id for r in got] == [job.id]
        assert time.time() >= job.timestamp + 0.3
        assert time.time() < job.timestamp + 2.0

    async def test_queues_lists_a_queue_with_jobs(self, queue: Queue, backend: Backend) -> None:
        await queue.add("x", 1)
        assert queue.name in await backend.queues()
