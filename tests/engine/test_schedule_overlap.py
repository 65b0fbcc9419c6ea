"""Schedules whose runs are slower than their period: ``ScheduleSpec(no_overlap=True)`` (a
deduplication window on the schedule that keeps the last absorbed slot) keeps at most one run
waiting behind the active one, where plain slots pile up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polyjobs import ConfigError, InvalidArgumentError, Job, QueueSpec, Runtime, ScheduleSpec
from polyjobs.backend import CAP_DEDUP, Backend
from polyjobs.plugins import open_backend


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'jobs.db'}"
    async with open_backend(url) as opened:
        yield opened


async def _run_slow_schedule(backend: Backend, no_overlap: bool) -> tuple[int, list[str]]:
    """A 0.2 s job scheduled every 50 ms for 0.8 s: the most jobs seen waiting, and the runs."""
    ran: list[str] = []

    async def slow(job: Job) -> None:
        ran.append(job.id)
        await asyncio.sleep(0.2)

    schedule = ScheduleSpec("tick", every=0.05, no_overlap=no_overlap)
    runtime = Runtime([QueueSpec("slow", slow, concurrency=1, schedule=schedule)], backend)
    await runtime.start()
    most = 0
    try:
        for _ in range(40):
            await asyncio.sleep(0.02)
            counts = await runtime.queue("slow").counts()
            most = max(most, counts["waiting"] + counts["delayed"])
    finally:
        await runtime.stop(1)
    return most, ran


async def test_slots_pile_up_behind_a_slow_run_without_no_overlap(backend: Backend) -> None:
    most, _ran = await _run_slow_schedule(backend, no_overlap=False)
    assert most >= 5


async def test_no_overlap_keeps_one_run_waiting_and_the_next_one_runs(backend: Backend) -> None:
    most, ran = await _run_slow_schedule(backend, no_overlap=True)
    assert most <= 1
    # the slot kept while the first run was active ran after it: the schedule goes on
    assert len(ran) >= 2 and len(set(ran)) == len(ran)


async def test_no_overlap_on_a_backend_without_windows_warns_and_runs_every_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def tick(job: Job) -> None:
        ran.append(job.id)

    async with open_backend("memory://") as backend:
        backend.capabilities = backend.capabilities - {CAP_DEDUP}
        schedule = ScheduleSpec("t", every=0.1, no_overlap=True)
        runtime = Runtime([QueueSpec("ticks", tick, schedule=schedule)], backend)
        with caplog.at_level(logging.WARNING, logger="polyjobs.runtime"):
            await runtime.start()
            await asyncio.sleep(0.45)
            await runtime.stop(1)
        with pytest.raises(ConfigError, match="deduplication windows"):
            await runtime.context.queue("ticks").upsert_schedule(
                "d", every=1, options={"deduplication": {"id": "d"}}
            )
    assert any("may pile up behind a slow run" in r.getMessage() for r in caplog.records)
    assert len(ran) >= 2


async def test_a_schedule_still_refuses_a_job_id_or_a_delay() -> None:
    async with open_backend("memory://") as backend:
        runtime = Runtime([], backend)
        for options in ({"job_id": "x"}, {"delay": 5}):
            with pytest.raises(InvalidArgumentError, match="neither job_id nor delay"):
                await runtime.context.queue("q").upsert_schedule("k", every=1, options=options)
