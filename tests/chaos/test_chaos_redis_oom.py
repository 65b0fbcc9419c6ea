"""Redis out of memory (``maxmemory`` reached, ``noeviction``): a redis-server this test starts
is pushed over its ``maxmemory`` while 20 jobs are running. Writes that grow memory are refused,
but the leases of live jobs hold (renewal and heartbeat scripts may write over maxmemory), so no
job is swept as stalled and run twice, and reads (``polyjobs stats``, the workers, the
schedules) keep working: they never use MULTI, which Redis refuses entirely over maxmemory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis

from polyjobs import Job, Queue, Worker, WorkerOptions
from polyjobs.backends.redis import RedisBackend
from polyjobs.backends.redis.testing import RedisServer
from tests.chaos.chaos_support import POLYJOBS

JOBS = 20
OPTIONS = WorkerOptions(
    concurrency=10,
    lease=1.0,
    stalled_interval=0.2,
    max_stalls=100,
    block=0.5,
    heartbeat_interval=0.3,
    schedule=True,
    schedule_refresh=0.3,
)


def _over_maxmemory(client: redis.Redis) -> None:
    """Set maxmemory to half of what the server uses now, and check that writes are refused."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used // 2))
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "x" * 1000)


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        await asyncio.sleep(0.02)


async def test_live_jobs_run_once_and_stats_work_over_maxmemory(
    redis_server: Callable[..., RedisServer],
    cli_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server(extra_args=["--maxmemory-policy", "noeviction"])
    client = server.client()
    producer = RedisBackend(server.url)
    await producer.open()
    queue = Queue("oom", producer)
    await queue.upsert_schedule("hourly", every=3600)
    await queue.add_bulk(
        [("x", {"i": i}, {"job_id": f"o{i}", "remove_on_complete": False}) for i in range(JOBS)]
    )
    runs: Counter[str] = Counter()
    stalled: list[str] = []
    errors: list[str] = []

    release = asyncio.Event()

    async def slow(job: Job) -> str:
        runs[job.id] += 1
        await release.wait()  # each job runs until the server has been over maxmemory a while
        return job.id

    backends = [RedisBackend(server.url) for _ in range(2)]
    workers = []
    for backend in backends:
        await backend.open()
        worker = Worker("oom", slow, backend, options=OPTIONS)
        worker.on("stalled", lambda job_id, failed: stalled.append(job_id))
        worker.on("error", lambda exc: errors.append(str(exc)))
        workers.append(worker)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await _until(lambda: len(runs) == JOBS, 5)
        caplog.clear()
        errors.clear()
        _over_maxmemory(client)
        over_since = time.monotonic()
        # over maxmemory for three leases: renewals and heartbeats must keep going
        stats = await asyncio.create_subprocess_exec(
            POLYJOBS,
            "stats",
            "--json",
            "--backend",
            server.url,
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(stats.communicate(), 30)
        assert stats.returncode == 0, err.decode()
        (row,) = [r for r in json.loads(out) if r["queue"] == "oom"]
        assert (row["queue"], row["active"], row["workers"]) == ("oom", JOBS, 2)
        assert len(await producer.list_workers("oom")) == 2
        assert [s.key for s in await producer.get_schedules("oom")] == ["hourly"]
        # over maxmemory for at least three leases in all (stats took part of it)
        await asyncio.sleep(max(over_since + 3 * OPTIONS.lease - time.monotonic(), 0.0))
        maxmemory = int(str(client.config_get("maxmemory")["maxmemory"]))
        assert int(str(client.info("memory")["used_memory"])) > maxmemory
        assert stalled == []
        assert (await producer.counts("oom"))["active"] == JOBS
        assert not [e for e in errors if "lease" in e], errors
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
        client.config_set("maxmemory", "0")
        release.set()
        await _until(lambda: all(w.active_jobs == 0 and not w.busy for w in workers), 10)
        counts = await producer.counts("oom")
        assert counts["completed"] == JOBS and counts["active"] == 0, counts
        assert stalled == [] and set(runs.values()) == {1}, runs
        assert not [e for e in errors if "no longer owned" in e], errors
    finally:
        client.config_set("maxmemory", "0")
        release.set()
        for worker in workers:
            worker.request_close(1.0)
        await asyncio.gather(*tasks, return_exceptions=True)
        for backend in [producer, *backends]:
            await backend.close()
        client.close()
