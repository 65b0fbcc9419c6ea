"""Contract: cancelling jobs (``cancel``): a job not started fails at once, a running one is
stopped by its worker, whichever connection cancels it; no retry either way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from polyjobs.backend import CAP_CANCEL, Backend, canceller
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase, Recorder, wait_until


class CancelContract(ContractBase):
    @asynccontextmanager
    async def _canceller(self, backend: Backend, queue: Queue) -> AsyncIterator[Queue]:
        """The queue as another process sees it, when the backend is shared."""
        async with self.other_connection(backend) as other:
            yield queue if other is backend else Queue(queue.name, other)

    async def test_a_job_not_started_fails_at_once(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_CANCEL)
        waiting = await queue.add("w", 1, attempts=3)
        delayed = await queue.add("d", 2, delay=60)
        kept = await queue.add("k", 3)
        assert await queue.cancel(waiting.id, "not wanted") == "failed"
        assert await queue.cancel(delayed.id, "too late") == "failed"
        for job, reason in ((waiting, "not wanted"), (delayed, "too late")):
            got = await queue.require_job(job.id)
            assert (got.state, got.failed_reason, got.attempts_made) == ("failed", reason, 0)
        seen = Recorder()

        async def record(job: Job) -> Any:
            seen.add(job.id)
            return job.data

        await self.burst(queue, record)
        assert seen.items == [kept.id]  # neither cancelled job ever ran
        counts = await queue.counts()
        assert (counts["failed"], counts["completed"], counts["delayed"]) == (2, 1, 0)
        # ended, missing: nothing to cancel; a retried job runs again
        assert await queue.cancel(kept.id, "x") is None
        assert await queue.cancel("no-such-job", "x") is None
        assert await canceller(backend).cancel_requests(queue.name, [waiting.id, "nope"]) == {}
        assert await queue.retry(waiting.id)
        await self.burst(queue, record)
        assert (await queue.require_job(waiting.id)).state == "completed"

    async def test_a_running_async_job_is_cancelled_where_it_awaits(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_CANCEL)
        started, interrupted = asyncio.Event(), Recorder()

        async def slow(job: Job) -> Any:
            if job.name != "slow":
                return job.data
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                interrupted.add(job.id)
                raise
            return "finished"

        job = await queue.add("slow", None, attempts=5)
        other = await queue.add("other", 7)
        worker = self.make_worker(queue, slow, cancel_interval=0.05, concurrency=1)
        events = Recorder()
        worker.on("cancelled", events.callback)
        async with self.running(worker), self._canceller(backend, queue) as elsewhere:
            await asyncio.wait_for(started.wait(), 10)
            before = time.monotonic()
            assert await elsewhere.cancel(job.id, "user pressed stop") == "requested"
            assert await canceller(backend).cancel_requests(queue.name, [job.id]) == {
                job.id: "user pressed stop"
            }
            await interrupted.wait_for(1)
            (event,) = await events.wait_for(1)
            assert event[0].id == job.id and event[1] == "user pressed stop"
            assert time.monotonic() - before < 8  # told within its cancel interval, not a lease
            await wait_until(
                lambda: self._state_is(queue, job.id, "failed"), what="cancelled job failed"
            )
            got = await queue.require_job(job.id)
            assert (got.failed_reason, got.attempts_made) == ("user pressed stop", 1)
            # the worker goes on with the next job (the slot was given back)
            await wait_until(lambda: self._state_is(queue, other.id, "completed"), what="next")
        assert interrupted.items == [job.id]
        assert (await queue.require_job(job.id)).state == "failed"  # no retry

    async def test_a_thread_processor_sees_job_cancelled(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_CANCEL)
        saw = Recorder()

        def polite(job: Job) -> Any:
            deadline = time.monotonic() + 20
            while not job.cancelled and time.monotonic() < deadline:
                time.sleep(0.01)
            saw.add((job.cancelled, job.cancel_reason))
            return "stopped early"

        job = await queue.add("t", None, attempts=2)
        worker = self.make_worker(queue, polite, cancel_interval=0.05)
        async with self.running(worker):
            await wait_until(lambda: self._state_is(queue, job.id, "active"), what="started")
            assert await queue.cancel(job.id, "enough") == "requested"
            assert await saw.wait_for(1) == [(True, "enough")]
            await wait_until(lambda: self._state_is(queue, job.id, "failed"), what="failed")
        got = await queue.require_job(job.id)
        assert (got.failed_reason, got.returnvalue) == ("enough", None)

    async def test_a_cancelled_job_released_by_its_worker_is_cancelled_on_its_next_run(
        self, backend: Backend, queue: Queue
    ) -> None:
        """The request stays on the job: a worker that closes before it looked hands the job
        back, and the next worker to take it stops it."""
        self.require(backend, CAP_CANCEL)
        started = asyncio.Event()

        async def slow(job: Job) -> Any:
            started.set()
            await asyncio.sleep(30)

        job = await queue.add("r", None)
        first = self.make_worker(queue, slow, cancel_interval=60)
        async with self.running(first, grace=0):
            await asyncio.wait_for(started.wait(), 10)
            assert await queue.cancel(job.id, "stop it") == "requested"
        assert (await queue.require_job(job.id)).state == "waiting"
        await self.burst(queue, slow, cancel_interval=0.05)
        got = await queue.require_job(job.id)
        assert (got.state, got.failed_reason) == ("failed", "stop it")

    @staticmethod
    async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
        job = await queue.get_job(job_id)
        return job is not None and job.state == state
