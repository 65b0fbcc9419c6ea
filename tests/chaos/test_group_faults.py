"""Fault test of job groups: a worker process holding the only slot of two groups (group
concurrency 1) is SIGKILLed. Its jobs keep their groups' slots until their lease runs out; then
the stall sweep of another worker gives the slots back and every job of both groups runs, never
more than one of a group at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyjobs import Job, Queue, Worker, open_backend
from polyjobs.backends.postgres.testing import fresh_schema, require_postgres, server_url
from tests.chaos.chaos_support import MAIN_REDIS

WORKER = str(Path(__file__).with_name("grouped_worker.py"))


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "redis":
        yield f"{MAIN_REDIS}?prefix=groupfault-{uuid.uuid4().hex[:8]}"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/grouped.db"
    else:
        require_postgres(server_url())
        with fresh_schema(server_url(), "pjgroup") as pg:
            yield pg


async def _run(url: str) -> None:
    async with open_backend(url) as backend:
        queue = Queue("grouped", backend)
        await queue.set_group_concurrency(1)
        await queue.add_bulk([("j", f"{g}{i}", {"group": g}) for g in "ab" for i in range(3)])
        proc = subprocess.Popen(
            [sys.executable, WORKER, url, "grouped"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            started = [await asyncio.to_thread(proc.stdout.readline) for _ in range(2)]
            assert all(line.startswith("started") for line in started)
            held = await queue.jobs("active")
            assert sorted(j.data for j in held) == ["a0", "b0"]  # one slot per group, both held
            proc.kill()
            proc.wait(5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
        # the latest lease the dead worker had renewed before it was killed
        leases_end = 0.0
        for job in held:
            record = await backend.get_job("grouped", job.id)
            assert record is not None and record.lease_until is not None
            leases_end = max(leases_end, record.lease_until)
        runs: list[tuple[str, float]] = []
        running: dict[str, int] = defaultdict(int)
        peak: dict[str, int] = defaultdict(int)

        async def quick(job: Job) -> Any:
            group = job.group or ""
            runs.append((str(job.data), time.time()))
            running[group] += 1
            peak[group] = max(peak[group], running[group])
            try:
                await asyncio.sleep(0.02)
            finally:
                running[group] -= 1

        worker = Worker(
            "grouped", quick, backend, concurrency=4, lease=1.0, stalled_interval=0.2, block=0.2
        )
        await asyncio.wait_for(worker.run(burst=True), 30)
        assert (await queue.counts())["completed"] == 6
        assert sorted(data for data, _ in runs) == ["a0", "a1", "a2", "b0", "b1", "b2"]
        # nothing of either group started before the dead worker's lease ran out
        assert min(at for _, at in runs) >= leases_end - 0.05
        assert dict(peak) == {"a": 1, "b": 1}
        await queue.obliterate()


def test_a_killed_worker_gives_its_group_slots_back_after_its_lease(url: str) -> None:
    asyncio.run(_run(url))
