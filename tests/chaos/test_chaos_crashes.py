"""Scenario 1: worker processes are SIGKILLed at random every second (six times) and restarted.

Every job records its id in Redis half-way through its work, so a job killed after that point
and run again shows up as a duplicate execution. At the end every job is completed (none lost,
failed or left active), and the duplicates are at most the jobs that the killed workers held
(``active`` and owned by them) at the moments of the kills: at-least-once, with re-runs only
for work that was in flight.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from polyjobs import Queue, open_backend
from polyjobs.backend import Backend
from tests.chaos.chaos_support import MAIN_REDIS

EMPTY = {"waiting": 0, "active": 0, "delayed": 0, "waiting-children": 0, "failed": 0}

WORKER = str(Path(__file__).with_name("chaos_worker.py"))
WORKERS = 3
KILL_EVERY = 1.0
KILLS = 6  # enough to hit workers mid-job many times; more only slows a loaded machine
KEEP = {"remove_on_complete": False}


@dataclass
class Crashes:
    url: str
    queue: str
    record_key: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    kills: int = 0
    in_flight_at_kills: int = 0

    def spawn(self) -> subprocess.Popen[str]:
        args = [sys.executable, WORKER, self.url, self.queue, MAIN_REDIS, self.record_key]
        return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)

    async def kill_one(self, backend: Backend, rng: random.Random) -> None:
        index = rng.randrange(len(self.procs))
        victim = self.procs[index]
        victim.kill()
        victim.wait(5)
        if victim.stdout is not None:
            victim.stdout.close()
        # The victim's jobs stay active until their lease expires, so this count is exact.
        active = await backend.list_jobs(self.queue, "active", 0, -1)
        self.in_flight_at_kills += sum(
            1 for r in active if r.worker and r.worker.split(":")[-2] == str(victim.pid)
        )
        self.kills += 1
        self.procs[index] = self.spawn()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()


async def _crash_run(url: str, record_key: str, jobs: int, sleep: float, limit: float) -> None:
    rng = random.Random(8)
    queue_name = "chaos-crash"
    recorder = redis.Redis.from_url(MAIN_REDIS, decode_responses=True)
    crashes = Crashes(url, queue_name, record_key)
    async with open_backend(url) as backend:
        queue = Queue(queue_name, backend)
        await queue.add_bulk(
            [
                (
                    "crash",
                    {"sleep": sleep * rng.uniform(0.5, 1.5)},
                    {"job_id": f"j{i}", "remove_on_complete": False},
                )
                for i in range(jobs)
            ]
        )
        try:
            crashes.procs = [crashes.spawn() for _ in range(WORKERS)]
            deadline = time.monotonic() + limit
            next_kill = time.monotonic() + KILL_EVERY
            while time.monotonic() < deadline:
                counts = await backend.counts(queue_name)
                if counts["completed"] + counts["failed"] == jobs:
                    break
                # keep killing while there is work left for a kill to interrupt
                due = time.monotonic() >= next_kill and crashes.kills < KILLS
                if due and counts["waiting"] > 0:
                    await crashes.kill_one(backend, rng)
                    next_kill += KILL_EVERY
                await asyncio.sleep(0.1)
            counts = await backend.counts(queue_name)
        finally:
            crashes.stop_all()
        runs = {k: int(v) for k, v in recorder.hgetall(record_key).items()}
        recorder.close()
    assert crashes.kills >= 3, f"only {crashes.kills} kills: the run was too short to prove much"
    assert counts == {**EMPTY, "completed": jobs}
    assert set(runs) == {f"j{i}" for i in range(jobs)}, "some job never ran"
    duplicates = sum(n - 1 for n in runs.values())
    print(
        f"{jobs} jobs, {crashes.kills} kills, {crashes.in_flight_at_kills} in flight at the "
        f"kills, {duplicates} duplicate executions"
    )
    assert duplicates <= crashes.in_flight_at_kills


# sized to take ~10 s on an idle 2-core machine with at least 3 kills; the limits (and the
# per-test timeouts above them) leave room for a loaded one
@pytest.mark.chaos
@pytest.mark.timeout(150)
async def test_sigkilled_redis_workers_lose_nothing(main_prefix: str) -> None:
    url = f"{MAIN_REDIS}?prefix={main_prefix}"
    await _crash_run(url, f"{main_prefix}:runs", jobs=2500, sleep=0.06, limit=120)


@pytest.mark.chaos
@pytest.mark.timeout(150)
async def test_sigkilled_sqlite_workers_lose_nothing(tmp_path: Path, main_prefix: str) -> None:
    url = f"sqlite:///{tmp_path}/chaos.db"
    await _crash_run(url, f"{main_prefix}:runs", jobs=800, sleep=0.2, limit=120)
