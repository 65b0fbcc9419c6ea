"""Fault test of the fleet-wide concurrency cap: three worker processes (4 slots each) share a
queue capped at 3 running jobs; one of them is SIGKILLed and restarted every second. Sampled
every 10 ms, neither the backend's active jobs nor the jobs really running in the live
processes ever exceed the cap, and the work goes on (the killed worker's slots come back
after its lease)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from polyjobs import Queue, open_backend
from polyjobs.backends.postgres.testing import fresh_schema, require_postgres, server_url
from tests.chaos.chaos_support import MAIN_REDIS

WORKER = str(Path(__file__).with_name("capped_worker.py"))
CAP = 3
RUN_FOR = 4.0
KILL_EVERY = 1.0


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "redis":
        yield f"{MAIN_REDIS}?prefix=capfault-{uuid.uuid4().hex[:8]}"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/capped.db"
    else:
        require_postgres(server_url())
        with fresh_schema(server_url(), "pjcap") as pg:
            yield pg


async def _run(url: str, record_key: str) -> tuple[int, int, int, int]:
    record = redis.Redis.from_url(MAIN_REDIS)
    queue_name = "capped"

    def spawn() -> subprocess.Popen[bytes]:
        args = [sys.executable, WORKER, url, queue_name, MAIN_REDIS, record_key]
        return subprocess.Popen(args)

    async with open_backend(url) as backend:
        queue = Queue(queue_name, backend)
        await queue.set_global_concurrency(CAP)
        await queue.add_bulk([("j", i) for i in range(3000)])
        procs = [spawn() for _ in range(3)]
        peak_active = peak_running = samples = 0
        try:
            deadline = time.monotonic() + 60
            while len(await queue.workers()) < len(procs):  # all started (a loaded machine)
                assert time.monotonic() < deadline, "the worker processes did not start"
                await asyncio.sleep(0.05)
            started = last_kill = time.monotonic()
            victim = 0
            while time.monotonic() - started < RUN_FOR:
                if time.monotonic() - last_kill >= KILL_EVERY:
                    procs[victim].kill()
                    procs[victim].wait(5)
                    procs[victim] = spawn()
                    victim = (victim + 1) % len(procs)
                    last_kill = time.monotonic()
                live = {str(p.pid) for p in procs}
                counts = await queue.counts()
                fields: dict[bytes, bytes] = record.hgetall(record_key)  # type: ignore[assignment]
                running = sum(int(v) for k, v in fields.items() if k.decode() in live)
                peak_active = max(peak_active, int(counts["active"]))
                peak_running = max(peak_running, running)
                samples += 1
                await asyncio.sleep(0.01)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            record.delete(record_key)
            record.close()
        done = int((await queue.counts())["completed"])
        await queue.obliterate()
    return peak_active, peak_running, samples, done


def test_the_cap_holds_across_processes_and_kills(url: str) -> None:
    record_key = f"capfault-record-{uuid.uuid4().hex[:8]}"
    peak_active, peak_running, samples, done = asyncio.run(_run(url, record_key))
    assert samples > 50  # sampled all along
    assert peak_active <= CAP, f"{peak_active} jobs active at once, cap {CAP}"
    assert peak_running <= CAP, f"{peak_running} jobs running at once, cap {CAP}"
    assert peak_active == CAP  # the cap was reached: the workers wanted more
    assert done > 3 * CAP  # and work went on through the kills
