"""Scenario 2: Redis faults during processing, with three workers (each its own connection
pool) on a redis-server this test starts with an fsynced append-only file.

``tests/redis/test_redis_faults.py`` shows that one worker finishes every job after a
``CLIENT KILL`` or a restart, and that ``close()`` returns while the server is refused. Here we
measure what it does not: that *every* worker is processing again within 2 s of the fault,
that no job ran twice without a reason, and that ``close()`` keeps its bound while the server
is hung (SIGSTOP: connections neither answer nor refuse), the harder case of "Redis is down".
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest

from polyjobs import Job, Queue, Worker, WorkerOptions
from polyjobs.backends.redis import RedisBackend
from polyjobs.backends.redis.testing import RedisServer
from polyjobs.errors import BackendError

EMPTY = {"waiting": 0, "active": 0, "delayed": 0, "waiting-children": 0, "failed": 0}

JOBS = 600
WORKERS = 3
RESUME_WITHIN = 2.0
FAST = WorkerOptions(
    concurrency=5,
    lease=2.0,
    stalled_interval=0.5,
    max_stalls=100,
    block=1.0,
    heartbeat_interval=0.5,
    schedule=False,
)


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        await asyncio.sleep(0.02)


async def _fault_run(server: RedisServer, fault: Callable[[], None]) -> None:
    producer = RedisBackend(server.url)
    await producer.open()
    await Queue("faults", producer).add_bulk(
        [("x", {"i": i}, {"job_id": f"f{i}", "remove_on_complete": False}) for i in range(JOBS)]
    )
    runs: Counter[str] = Counter()
    started: dict[str, list[float]] = {}
    backends = [RedisBackend(server.url) for _ in range(WORKERS)]
    workers: list[Worker] = []
    for n, backend in enumerate(backends):
        await backend.open()

        async def work(job: Job, name: str = f"w{n}") -> None:
            started.setdefault(name, []).append(time.monotonic())
            await asyncio.sleep(0.02)
            runs[job.id] += 1

        workers.append(Worker("faults", work, backend, options=FAST))
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await _until(lambda: runs.total() >= JOBS // 4, 15)
        fault()
        healed = time.monotonic()
        await _until(lambda: len(set(runs)) == JOBS, 30)
        for name in (f"w{n}" for n in range(WORKERS)):
            after = [t for t in started.get(name, []) if t >= healed]
            assert after, f"worker {name} never took a job again after the fault"
            assert after[0] - healed < RESUME_WITHIN, f"{name} resumed after {after[0] - healed}s"

        async def settled() -> bool:
            try:  # a call in flight when the connection was cut fails; the next one works
                counts = await producer.counts("faults")
            except BackendError:
                return False
            return counts["completed"] == JOBS and counts["active"] == 0

        deadline = time.monotonic() + 10
        while not await settled() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        counts = await producer.counts("faults")
        assert counts == {**EMPTY, "completed": JOBS}
        # a job may run twice only when the fault took its fetch or finish reply
        assert sum(n - 1 for n in runs.values()) <= WORKERS * FAST.concurrency
    finally:
        await asyncio.wait_for(asyncio.gather(*(w.close(grace=2) for w in workers)), 15)
        await asyncio.gather(*tasks)
        for backend in (*backends, producer):
            await backend.close()


@pytest.mark.chaos
async def test_every_worker_resumes_within_2s_of_client_kill(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(persist=True)

    def client_kill() -> None:
        admin = server.client()
        try:
            assert admin.client_kill_filter(_type="normal", skipme=True) >= WORKERS
        finally:
            admin.close()

    await _fault_run(server, client_kill)


@pytest.mark.chaos
async def test_every_worker_resumes_within_2s_of_a_redis_restart(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(persist=True)

    def restart() -> None:
        server.kill()
        time.sleep(1.0)  # down for a second: the workers' calls fail and back off meanwhile
        server.start()

    await _fault_run(server, restart)


async def test_close_returns_within_grace_while_redis_hangs(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    admin = server.client()
    pid = int(admin.info("server")["process_id"])
    admin.close()
    backend = RedisBackend(server.url)
    await backend.open()
    await Queue("hung", backend).add_bulk([("x", {"i": i}) for i in range(20)])
    began = asyncio.Event()

    async def forever(job: Job) -> None:
        began.set()
        await asyncio.sleep(60)

    worker = Worker("hung", forever, backend, options=FAST)
    run = asyncio.create_task(worker.run())
    grace = 0.5
    try:
        await asyncio.wait_for(began.wait(), 5)
        os.kill(pid, signal.SIGSTOP)
        closing = asyncio.create_task(worker.close(grace=grace))
        started = time.monotonic()
        await asyncio.wait([closing], timeout=grace + 4)
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(worker.close(grace=0), 30)
        await asyncio.wait_for(run, 5)
        await asyncio.wait_for(backend.close(), 5)
    # Worker.close documents "within about grace + 2 s, even when the backend is unreachable"
    assert took < grace + 2.5, f"close() took {took:.1f}s or more with Redis hung"


async def test_a_producer_call_after_client_kill_succeeds(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    backend = RedisBackend(server.url)
    await backend.open()
    try:
        queue = Queue("producer", backend)
        await queue.add("x", {})
        admin = server.client()
        try:
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        finally:
            admin.close()
        await queue.add("y", {})  # Redis never went away: this should just work
        assert (await queue.counts())["waiting"] == 2
    finally:
        await backend.close()
