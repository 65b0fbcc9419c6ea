"""Faults on a PostgreSQL server: every connection of the deployment killed
(``pg_terminate_backend``) mid-processing, the server restarted (a cluster this module starts on
a spare port), a worker process SIGKILLed mid-job. No job is lost or left active, and a job
whose worker died is done again within its lease.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from polyjobs import Queue, Worker, open_backend
from polyjobs.backends.postgres.testing import PostgresCluster, pg_tool, with_schema
from polyjobs.backends.postgres.url import PostgresUrl
from polyjobs.errors import BackendError
from polyjobs.job import Job
from polyjobs.worker import WorkerOptions

FAST = WorkerOptions(
    concurrency=10,
    lease=1.0,
    stalled_interval=0.3,
    max_stalls=50,
    block=0.5,
    heartbeat_interval=0.5,
    schedule=False,
)
KEEP_ALL = {"remove_on_complete": False}
HERE = Path(__file__).parent


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return
        except BackendError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


async def _kill_connections(url: str) -> int:
    """Terminate every session of this deployment (its application name) from outside."""
    parsed = PostgresUrl.parse(url)
    conn = await asyncpg.connect(parsed.dsn)
    try:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"polyjobs:{parsed.schema}"[:63],
        )
        return len(killed)
    finally:
        await conn.close()


async def _all_done(queue: Queue, total: int) -> bool:
    counts = await queue.counts()
    return bool(counts["completed"] == total and counts["active"] == 0)


async def test_killed_connections_lose_nothing_and_idle_workers_wake_again(pg_url: str) -> None:
    runs: Counter[str] = Counter()

    async def process(job: Job) -> None:
        runs[job.id] += 1
        await asyncio.sleep(0.01)

    async with open_backend(pg_url) as producer, open_backend(pg_url) as consumer:
        queue = Queue("faults", producer, default_options=KEEP_ALL)
        await queue.add_bulk([("job", {"n": i}) for i in range(200)])
        worker = Worker("faults", process, consumer, options=FAST)
        task = asyncio.create_task(worker.run())
        try:
            kills = 0
            for _ in range(3):
                await _until(lambda: _some_done(queue, len(runs) + 20), 20, "progress")
                kills += await _kill_connections(pg_url)
            assert kills >= 3
            await _until(lambda: _all_done(queue, 200), 30, "all 200 jobs completed")
            # the idle worker's listening connection is killed too: it must still wake
            await asyncio.sleep(0.3)
            assert await _kill_connections(pg_url) >= 1
            late = await queue.add("late", {"n": -1})
            await _until(lambda: _all_done(queue, 201), 15, "the job added after the kill ran")
        finally:
            await worker.close(5)
            await asyncio.wait_for(task, 10)
    assert len(runs) == 201 and late.id in runs


async def _some_done(queue: Queue, at_least: int) -> bool:
    return bool((await queue.counts())["completed"] >= min(at_least, 200))


def test_a_worker_killed_mid_job_loses_nothing(pg_url: str, tmp_path: Path) -> None:
    asyncio.run(_sigkill_scenario(pg_url))


async def _sigkill_scenario(url: str) -> None:
    lease = 1.0
    async with open_backend(url) as backend:
        queue = Queue("killed", backend, default_options=KEEP_ALL)
        hang = await queue.add("hang", {"n": 0})
        child = subprocess.Popen(
            [sys.executable, str(HERE / "pg_proc.py"), url, "killed", str(lease)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
            while line.startswith("ready"):
                line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
            assert line.strip() == f"started {hang.id}"
            await queue.add_bulk([("quick", {"n": i}) for i in range(1, 50)])
            await _until(lambda: _completed_at_least(queue, 10), 20, "the child working")
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            killed_at = time.time()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            if child.stdout is not None:
                child.stdout.close()
        assert (await queue.get_job(hang.id)).state == "active"  # type: ignore[union-attr]

        async def process(job: Job) -> str:
            return "recovered" if job.name == "hang" else "ok"

        worker = Worker("killed", process, backend, options=FAST)
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: _all_done(queue, 50), 20, "all 50 jobs completed")
        finally:
            await worker.close(5)
            await asyncio.wait_for(task, 10)
        job = await queue.get_job(hang.id)
        assert job is not None and job.returnvalue == "recovered" and job.stalls == 1
        # taken again once its lease ran out (plus one stall sweep), not later
        assert job.processed_on is not None
        assert job.processed_on - killed_at <= lease + FAST.stalled_interval + 2.0


async def _completed_at_least(queue: Queue, n: int) -> bool:
    return bool((await queue.counts())["completed"] >= n)


# -- a server this module controls ------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    if pg_tool("initdb") is None or pg_tool("pg_ctl") is None:
        message = "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    # a directory the postgres user can reach (pytest's tmp_path is private to root)
    directory = Path(tempfile.mkdtemp(prefix="polyjobs-pg-"))
    server = PostgresCluster(directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop("immediate")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_server_restart_mid_processing_loses_nothing(
    cluster: PostgresCluster, mode: str
) -> None:
    url = with_schema(cluster.url, f"restart_{mode}")
    runs: Counter[str] = Counter()

    async def process(job: Job) -> None:
        runs[job.id] += 1
        await asyncio.sleep(0.005)

    async with open_backend(url) as producer, open_backend(url) as consumer:
        queue = Queue("restart", producer, default_options=KEEP_ALL)
        await queue.add_bulk([("job", {"n": i}) for i in range(300)])
        worker = Worker("restart", process, consumer, options=FAST)
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: _completed_at_least(queue, 30), 20, "progress")
            await asyncio.to_thread(cluster.stop, mode)  # "immediate" is a crash
            await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster.start)
            await _until(lambda: _all_done(queue, 300), 40, "all 300 jobs completed")
            late = await queue.add("late", {})
            await _until(lambda: _all_done(queue, 301), 15, "a job added after the restart ran")
        finally:
            await worker.close(5)
            await asyncio.wait_for(task, 10)
    assert len(runs) == 301 and late.id in runs
