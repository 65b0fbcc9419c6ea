"""Contract: queue rate limits across workers, and a processor's push-back (``rate-limit``)."""

from __future__ import annotations

import asyncio
import time

from polyjobs.backend import CAP_RATE_LIMIT, Backend
from polyjobs.errors import RateLimitError
from polyjobs.job import Job
from polyjobs.options import RateLimit
from polyjobs.queue import Queue
from polyjobs.testing.support import WAIT, ContractBase, Recorder


def busiest_window(starts: list[float], width: float) -> int:
    """The most starts inside any half-open window ``[t, t + width)``."""
    starts = sorted(starts)
    best = 0
    for i, first in enumerate(starts):
        best = max(best, sum(1 for t in starts[i:] if t < first + width))
    return best


class RateLimitContract(ContractBase):
    async def test_rate_limit_is_stored_and_removed(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_RATE_LIMIT)
        assert await queue.rate_limit() is None
        await queue.set_rate_limit("5/2s")
        assert await queue.rate_limit() == RateLimit(5, 2.0)
        await queue.set_rate_limit(None)
        assert await queue.rate_limit() is None

    async def test_no_window_sees_more_starts_than_the_limit_across_workers(
        self, backend: Backend, queue: Queue
    ) -> None:
        """3 workers x concurrency 10, limited to 10 per second: never 11 starts in a second,
        and throughput stays close to the limit."""
        self.require(backend, CAP_RATE_LIMIT)
        await queue.set_rate_limit(RateLimit(10, 1.0))
        done = Recorder()

        async def quick(job: Job) -> None:
            done.add(job.id)

        await queue.add_bulk([("j", {"n": n}) for n in range(35)])
        workers = [self.make_worker(queue, quick, concurrency=10) for _ in range(3)]
        started = time.monotonic()
        async with self.running(workers[0]), self.running(workers[1]), self.running(workers[2]):
            await done.wait_for(35, timeout=WAIT)
        elapsed = time.monotonic() - started
        jobs = await queue.jobs("completed")
        starts = [j.processed_on for j in jobs if j.processed_on is not None]
        assert len(starts) == 35
        assert busiest_window(starts, 1.0) <= 10
        # 35 jobs at 10/s: batches at 0, 1, 2 and 3 s; not much slower than that.
        assert 2.9 <= max(starts) - min(starts) < 4.5
        assert elapsed < 6.0

    async def test_jobs_held_back_are_not_attempts(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_RATE_LIMIT)
        await queue.set_rate_limit("1/300ms")
        await queue.add_bulk([("j", {"n": n}, {"attempts": 1}) for n in range(4)])
        await self.burst(queue, lambda job: None, concurrency=4)
        counts = await queue.counts()
        assert (counts["completed"], counts["failed"]) == (4, 0)
        jobs = await queue.jobs("completed")
        assert {j.attempts_made for j in jobs} == {1}
        assert busiest_window([j.processed_on or 0.0 for j in jobs], 0.3) == 1

    async def test_rate_limit_error_holds_the_whole_queue_without_an_attempt(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_RATE_LIMIT)
        starts: list[tuple[str, float]] = []

        async def limited_once(job: Job) -> str:
            starts.append((job.id, time.time()))
            if job.data["first"] and len(starts) == 1:
                raise RateLimitError(0.6, "remote said 429 for everyone")
            return "ok"

        first = await queue.add("j", {"first": True}, attempts=1)
        await queue.add_bulk([("j", {"first": False}) for _ in range(3)])
        await self.burst(queue, limited_once, concurrency=1)
        counts = await queue.counts()
        assert (counts["completed"], counts["failed"]) == (4, 0)
        held_at = starts[0][1]
        later = [t for _, t in starts[1:]]
        assert min(later) >= held_at + 0.6 - 0.02  # nothing started while the queue was held
        job = await queue.get_job(first.id)
        assert job is not None and job.attempts_made == 1  # the held-back run did not count
        assert [job_id for job_id, _ in starts].count(first.id) == 2

    async def test_a_blocked_fetch_wakes_when_the_window_frees(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_RATE_LIMIT)
        await queue.set_rate_limit("2/500ms")
        done = Recorder()

        async def record(job: Job) -> None:
            # the start the limiter counted (a loaded machine may call the processor late)
            done.add(job.processed_on or time.time())

        async with self.running(self.make_worker(queue, record, concurrency=5, block=30.0)):
            await queue.add_bulk([("j", {}) for _ in range(4)])
            times = await done.wait_for(4, timeout=5.0)
        # the second pair waited for the window (not for the 30 s block)
        assert 0.4 <= max(times) - min(times) < 2.0
        await asyncio.sleep(0)
