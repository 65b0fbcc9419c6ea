"""Connection loss: a redis-server this test starts on a spare port is killed and restarted
mid-processing, or all its clients are killed; workers reconnect with backoff and carry on,
no job is lost or left active, and closing returns within its grace while Redis is down.

The restarted server keeps its data through an append-only file fsynced on every write (a
server without persistence forgets every job when killed, so there would be nothing to check).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from polyjobs import Queue, Worker
from polyjobs.backends.redis import RedisBackend
from polyjobs.backends.redis.testing import RedisServer
from polyjobs.errors import BackendError
from polyjobs.job import Job
from polyjobs.worker import WorkerOptions

EMPTY = {"waiting": 0, "active": 0, "delayed": 0, "waiting-children": 0, "failed": 0}

JOBS = 300
FAST = WorkerOptions(
    concurrency=10,
    lease=1.0,
    stalled_interval=0.3,
    max_stalls=50,
    block=0.5,
    heartbeat_interval=0.5,
    schedule=False,
)


@pytest.fixture
def server(redis_server: Callable[..., RedisServer]) -> RedisServer:
    return redis_server(persist=True)


async def _until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await predicate():  # type: ignore[operator]
                return
        except BackendError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


async def _run_through_fault(server: RedisServer, fault: str) -> None:
    producer = RedisBackend(server.url)
    backend = RedisBackend(server.url)
    await producer.open()
    await backend.open()
    queue = Queue("faulty", producer)
    await queue.add_bulk([("x", {"i": i}, {"remove_on_complete": False}) for i in range(JOBS)])
    runs: list[int] = []

    async def slow(job: Job) -> int:
        await asyncio.sleep(0.005)
        runs.append(job.data["i"])
        return int(job.data["i"])

    errors: list[BaseException] = []
    worker = Worker("faulty", slow, backend, options=FAST)
    worker.on("error", errors.append)
    run = asyncio.create_task(worker.run())
    try:
        await _until(lambda: _at_least(runs, JOBS // 3), 10)
        if fault == "restart":
            server.kill()
            await asyncio.sleep(0.3)
            server.start()
        else:
            admin = server.client()
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 2  # both backends
            admin.close()

        async def all_done() -> bool:
            return (await producer.counts("faulty"))["completed"] == JOBS

        await _until(all_done, 20)
        counts = await producer.counts("faulty")
        assert counts == {**EMPTY, "completed": JOBS}
        assert set(runs) == set(range(JOBS))  # each ran at least once (at-least-once)
        if fault == "restart":
            assert errors  # the fault did reach the worker
        # after a client kill, only calls in flight fail: idle connections are renewed first
    finally:
        await asyncio.wait_for(worker.close(grace=2), 10)
        await run
        await backend.close()
        await producer.close()


async def _at_least(items: list[int], n: int) -> bool:
    return len(items) >= n


async def test_worker_carries_on_after_redis_is_killed_and_restarted(
    server: RedisServer,
) -> None:
    await _run_through_fault(server, "restart")


async def test_worker_carries_on_after_client_kill(server: RedisServer) -> None:
    await _run_through_fault(server, "client-kill")


async def test_close_returns_within_grace_while_redis_is_down(server: RedisServer) -> None:
    backend = RedisBackend(server.url)
    await backend.open()
    queue = Queue("down", backend)
    await queue.add_bulk([("x", {"i": i}) for i in range(50)])
    started_jobs = asyncio.Event()

    async def forever(job: Job) -> None:
        started_jobs.set()
        await asyncio.sleep(60)

    worker = Worker("down", forever, backend, options=FAST, concurrency=5)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started_jobs.wait(), 5)
    server.kill()
    started = time.monotonic()
    await asyncio.wait_for(worker.close(grace=0.5), 6)
    await asyncio.wait_for(run, 1)
    await asyncio.wait_for(backend.close(), 1)
    # the worker's own bound is grace + a few seconds of shutdown calls; refused connections
    # fail at once, so it is much quicker here
    assert time.monotonic() - started < 4.0


async def test_idle_connections_are_renewed_after_a_restart(server: RedisServer) -> None:
    """Every pooled connection is idle and closed by the server when it restarts: the next
    commands and scripts reconnect first (nothing was sent on the dead connection, so nothing
    can run twice) instead of failing once per connection."""
    backend = RedisBackend(server.url)
    await backend.open()
    try:
        queue = Queue("renewed", backend)
        await asyncio.gather(*(queue.add("x", {}) for _ in range(5)))  # several connections
        await asyncio.gather(*(queue.counts() for _ in range(5)))
        server.kill()
        server.start()
        await asyncio.sleep(0.05)  # the loop sees the end of file (redis-py's own check)
        assert (await queue.counts())["waiting"] == 5
        for _ in range(5):
            await queue.add("y", {})
        server.kill()
        server.start()  # this time the loop has not looked at the sockets yet
        assert len(await asyncio.gather(*(queue.add("z", {}) for _ in range(5)))) == 5
        assert (await queue.counts())["waiting"] == 15
    finally:
        await backend.close()
