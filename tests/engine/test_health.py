"""``polyjobs.health``: the checks behind ``polyjobs health``, on the in-memory backend (the
fault tests with real processes are in tests/chaos/test_chaos_health.py)."""

from __future__ import annotations

import time

from polyjobs import open_backend
from polyjobs.backend import NewJob, WorkerInfo
from polyjobs.health import check_health


def _info(worker_id: str, fetched: float) -> WorkerInfo:
    return WorkerInfo(worker_id, "q", "host", 1, 1, started=time.time(), fetched=fetched)


def _job(age: float) -> NewJob:
    at = time.time() - age
    return NewJob("x", "{}", {}, timestamp=at, run_at=at)


async def test_a_queue_is_healthy_only_with_a_worker_that_fetched_recently() -> None:
    async with open_backend("memory://") as backend:
        await backend.add("q", [_job(0)])
        report = await check_health(backend)
        assert not report.ok
        assert "queue q workers: no live worker" in report.verdict()
        await backend.heartbeat(_info("stuck", time.time() - 100), ttl=5)
        report = await check_health(backend, fetch_age=90)
        assert not report.ok
        assert "1 live worker, none fetched in the last 90s (last fetch 100s ago)" in (
            report.verdict()
        )
        await backend.heartbeat(_info("never", 0.0), ttl=5)
        assert "(last fetch 100s ago)" in (await check_health(backend)).verdict()
        await backend.heartbeat(_info("fresh", time.time() - 2), ttl=5)
        report = await check_health(backend, fetch_age=90)
        assert report.ok, report.verdict()
        assert report.verdict() == "healthy (1 queue checked)"
        lines = [c.line() for c in report.checks]
        assert lines[0] == "ok   backend: reachable"
        assert lines[1] == "ok   queue q workers: 1 worker fetching (last fetch 2s ago)"
        assert lines[2] == "ok   queue q waiting: the job next in line has waited 0s (limit 5m)"


async def test_the_job_next_in_line_must_not_wait_too_long() -> None:
    async with open_backend("memory://") as backend:
        await backend.heartbeat(_info("fresh", time.time()), ttl=5)
        await backend.add("q", [_job(30)])
        report = await check_health(backend, max_age=10)
        assert not report.ok
        assert report.verdict() == (
            "UNHEALTHY: queue q waiting: the job next in line has waited 30s (limit 10s)"
        )
        assert (await check_health(backend, max_age=60)).ok
        # a paused queue is not meant to be consumed
        await backend.pause("q")
        assert (await check_health(backend, max_age=10, fetch_age=0.001)).ok


async def test_expected_queues() -> None:
    async with open_backend("memory://") as backend:
        assert (await check_health(backend)).verdict() == "healthy (no queue yet)"
        report = await check_health(backend, ["expected"])
        assert [c.ok for c in report.checks] == [True, False, True]
