"""Contract: the fleet-wide concurrency cap (``global-concurrency``): ``fetch`` and the fetch
part of ``finish`` never make more jobs of a queue active than the cap, whoever asks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from polyjobs.backend import CAP_GLOBAL_CONCURRENCY, Backend, Finish, NewJob
from polyjobs.errors import InvalidArgumentError
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase


def _new(n: int) -> list[NewJob]:
    now = time.time()
    return [NewJob("j", json.dumps(i), {}, now) for i in range(n)]


def _done(job_id: str) -> Finish:
    return Finish(job_id, "completed", 1, time.time(), returnvalue_json="null")


class ConcurrencyContract(ContractBase):
    async def test_fetch_and_finish_never_exceed_the_cap(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GLOBAL_CONCURRENCY)
        assert await queue.global_concurrency() is None
        await queue.set_global_concurrency(2)
        assert await queue.global_concurrency() == 2
        await backend.add(queue.name, _new(6))
        async with self.other_connection(backend) as other:
            first = await backend.fetch(queue.name, "w1", 5, 30, 0)
            assert len(first) == 2
            assert await other.fetch(queue.name, "w2", 5, 30, 0) == []
            # one ends: its finish may take one slot back, no more
            done = await backend.finish(queue.name, "w1", [_done(first[0].id)], 5, 30)
            assert done.lost == [] and len(done.jobs) == 1
            assert await other.fetch(queue.name, "w2", 5, 30, 0) == []
            assert (await queue.counts())["active"] == 2
            # a blocked fetch of another worker wakes when a slot frees, well before its block
            waiting = asyncio.create_task(other.fetch(queue.name, "w2", 5, 30, 8.0))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            started = time.monotonic()
            await backend.finish(queue.name, "w1", [_done(first[1].id)], 0, 30)
            got = await asyncio.wait_for(waiting, 10)
            assert len(got) == 1 and time.monotonic() - started < 6
            # raising the cap lets more start; None removes it
            await queue.set_global_concurrency(3)
            assert len(await other.fetch(queue.name, "w2", 5, 30, 0)) == 1
            await queue.set_global_concurrency(None)
            assert await queue.global_concurrency() is None
            assert len(await other.fetch(queue.name, "w2", 5, 30, 0)) == 1
        assert (await queue.counts())["active"] == 4

    async def test_workers_together_run_no_more_than_the_cap(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GLOBAL_CONCURRENCY)
        await queue.set_global_concurrency(2)
        running, peak = 0, 0

        async def slow(job: Job) -> Any:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await asyncio.sleep(0.1)
            finally:
                running -= 1
            return job.data

        await queue.add_bulk([("j", i) for i in range(8)])
        async with self.other_connection(backend) as other:
            one = self.make_worker(queue, slow, concurrency=3)
            two = self.make_worker(Queue(queue.name, other), slow, concurrency=3)
            await asyncio.wait_for(asyncio.gather(self.run_burst(one), self.run_burst(two)), 30)
        assert (await queue.counts())["completed"] == 8
        assert peak == 2

    async def test_a_cap_must_be_a_positive_integer(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_GLOBAL_CONCURRENCY)
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises(InvalidArgumentError, match="global concurrency"):
                await queue.set_global_concurrency(bad)  # type: ignore[arg-type]
        assert await queue.global_concurrency() is None
