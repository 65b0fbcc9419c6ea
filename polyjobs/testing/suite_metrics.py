"""Contract: metrics kept in the backend (``metrics``): ``finish`` counts the jobs it ends, per
minute of their finish, with their processing time; kept 24 h; forgotten by ``obliterate``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from polyjobs.backend import (
    CAP_METRICS,
    METRICS_KEEP,
    Backend,
    Finish,
    MetricsBackend,
    NewJob,
    minute_of,
)
from polyjobs.errors import UnrecoverableError
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase


def _new(job_id: str) -> NewJob:
    now = time.time()
    return NewJob(name="m", data_json="null", opts={}, timestamp=now, job_id=job_id, run_at=now)


class MetricsContract(ContractBase):
    @staticmethod
    def metrics(backend: Backend) -> MetricsBackend:
        ContractBase.require(backend, CAP_METRICS)
        assert isinstance(backend, MetricsBackend)
        return backend

    async def _finish_at(self, backend: Backend, queue: str, ends: list[tuple[str, float]]) -> None:
        """Add, take and finish one job per (status, finished_on), one finish call each."""
        for i, (status, finished_on) in enumerate(ends):
            job_id = f"m{i}-{time.time_ns()}"
            await backend.add(queue, [_new(job_id)])
            (taken,) = await backend.fetch(queue, "tok", 1, 30.0, 0)
            assert taken.id == job_id
            fin = Finish(job_id, status, 1, finished_on)  # type: ignore[arg-type]
            result = await backend.finish(queue, "tok", [fin], 0, 30.0)
            assert result.lost == []

    async def test_finished_jobs_are_counted_with_their_processing_time(
        self, backend: Backend, queue: Queue
    ) -> None:
        metrics = self.metrics(backend)
        assert await metrics.get_metrics(queue.name, 0.0) == []
        started = time.time()
        tries: dict[Any, int] = {}

        async def work(job: Job) -> str:
            await asyncio.sleep(0.05)
            tries[job.data] = tries.get(job.data, 0) + 1
            if job.data == "bad":
                raise UnrecoverableError("no")
            if job.data == "flaky" and tries["flaky"] == 1:
                raise RuntimeError("once")  # a retry is not a finish: not counted
            return "ok"

        await queue.add("a", "good")
        await queue.add("b", "bad")
        await queue.add("c", "flaky", attempts=2)
        await self.burst(queue, work)
        minutes = await metrics.get_metrics(queue.name, started - 60)
        assert sum(m.completed for m in minutes) == 2
        assert sum(m.failed for m in minutes) == 1
        # three counted runs of at least 50 ms each (the retried attempt is not counted)
        assert 0.13 <= sum(m.time_sum for m in minutes) < 30
        assert all(m.minute == minute_of(m.minute) for m in minutes)
        assert minutes == sorted(minutes, key=lambda m: m.minute)

    async def test_counts_go_to_the_minute_of_the_finish(
        self, backend: Backend, queue: Queue
    ) -> None:
        metrics = self.metrics(backend)
        now = time.time()
        hour_ago = now - 3600
        await self._finish_at(
            backend,
            queue.name,
            [("completed", hour_ago), ("failed", hour_ago), ("completed", now), ("completed", now)],
        )
        minutes = await metrics.get_metrics(queue.name, now - 7200)
        by_minute = {m.minute: (m.completed, m.failed) for m in minutes}
        assert by_minute == {minute_of(hour_ago): (1, 1), minute_of(now): (2, 0)}
        recent = await metrics.get_metrics(queue.name, now - 1)
        assert [(m.minute, m.completed) for m in recent] == [(minute_of(now), 2)]
        # the minute holding ``since`` is included, whatever second of it ``since`` is
        assert len(await metrics.get_metrics(queue.name, minute_of(hour_ago) + 59)) == 2

    async def test_one_finish_counts_each_minute_of_its_jobs(
        self, backend: Backend, queue: Queue
    ) -> None:
        metrics = self.metrics(backend)
        now = time.time()
        hour_ago = now - 3600
        ids = [f"b{i}-{time.time_ns()}" for i in range(5)]
        await backend.add(queue.name, [_new(job_id) for job_id in ids])
        assert len(await backend.fetch(queue.name, "tok", 5, 30.0, 0)) == 5
        batch = [
            Finish(ids[0], "completed", 1, hour_ago),
            Finish(ids[1], "failed", 1, now),
            Finish(ids[2], "completed", 1, now),
            Finish(ids[3], "retry", 1, now),  # not an end: not counted
            Finish(ids[4], "failed", 1, hour_ago),
        ]
        assert (await backend.finish(queue.name, "tok", batch, 0, 30.0)).lost == []
        minutes = await metrics.get_metrics(queue.name, now - 7200)
        by_minute = {m.minute: (m.completed, m.failed) for m in minutes}
        assert by_minute == {minute_of(hour_ago): (1, 1), minute_of(now): (1, 1)}

    async def test_minutes_older_than_the_keep_are_forgotten(
        self, backend: Backend, queue: Queue
    ) -> None:
        metrics = self.metrics(backend)
        now = time.time()
        old = now - METRICS_KEEP - 600
        await self._finish_at(backend, queue.name, [("completed", old)])
        assert [m.minute for m in await metrics.get_metrics(queue.name, 0.0)] == [minute_of(old)]
        await self._finish_at(backend, queue.name, [("completed", now)])
        assert [m.minute for m in await metrics.get_metrics(queue.name, 0.0)] == [minute_of(now)]

    async def test_obliterate_forgets_the_metrics(self, backend: Backend, queue: Queue) -> None:
        metrics = self.metrics(backend)
        await self._finish_at(backend, queue.name, [("completed", time.time())])
        assert len(await metrics.get_metrics(queue.name, 0.0)) == 1
        await queue.obliterate()
        assert await metrics.get_metrics(queue.name, 0.0) == []
