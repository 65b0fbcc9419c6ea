"""Outage noise: while Redis is down, a worker logs one WARNING per loop kind (fetch, heartbeat,
stalled-job check, scheduler...) for the whole outage, and one INFO line per kind when Redis is
back, with the outage's duration; no ERROR, no traceback (it used to log an ERROR with a full
traceback from the scheduler every second)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Callable

import pytest

from polyjobs import Job, Queue, Worker, WorkerOptions
from polyjobs.backends.redis import RedisBackend
from polyjobs.backends.redis.testing import RedisServer
from polyjobs.errors import BackendError
from polyjobs.outage import OUTAGES, Outages

KINDS = {"fetch", "heartbeat", "stalled-job check", "scheduler"}
OPTIONS = WorkerOptions(
    lease=1.0,
    stalled_interval=0.2,
    block=30.0,
    heartbeat_interval=0.2,
    schedule=True,
    schedule_refresh=0.2,
)


@pytest.fixture
def server(redis_server: Callable[..., RedisServer]) -> RedisServer:
    return redis_server()


async def test_one_warning_per_outage_and_one_line_when_back(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="polyjobs")
    backend = RedisBackend(server.url)
    await backend.open()
    done: list[str] = []

    async def note(job: Job) -> None:
        done.append(job.id)

    worker = Worker("outage", note, backend, options=OPTIONS)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)
        assert not KINDS & set(OUTAGES.open_kinds())
        caplog.clear()
        server.kill()
        await asyncio.sleep(2.0)  # ~10 tries of each loop
        assert {"fetch", "heartbeat", "stalled-job check", "scheduler"} <= set(OUTAGES.open_kinds())
        server.start()
        # every loop says it is back within its retry pause (at most 5 s), the fetch loop too,
        # though an idle fetch blocks up to `block` (30 s here) once it reaches the server
        deadline = time.monotonic() + 8
        while KINDS & set(OUTAGES.open_kinds()):
            assert time.monotonic() < deadline, OUTAGES.open_kinds()
            await asyncio.sleep(0.05)
        await Queue("outage", backend).add("after", {}, job_id="after")
        while "after" not in done:
            assert time.monotonic() < deadline + 5
            await asyncio.sleep(0.05)
    finally:
        worker.request_close(1.0)
        await asyncio.gather(task, return_exceptions=True)
        await backend.close()
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
    warned = Counter(r.getMessage().split(" (")[0] for r in records if r.levelno == logging.WARNING)
    back = Counter(
        r.getMessage().split(":")[0] for r in records if "is back after" in r.getMessage()
    )
    assert set(warned.values()) == {1} and set(warned) >= KINDS, warned
    assert {kind: back[kind] for kind in KINDS} == dict.fromkeys(KINDS, 1), back
    for line in [r.getMessage() for r in records if "is back after" in r.getMessage()]:
        took = float(re.search(r"back after ([\d.]+)s", line).group(1))  # type: ignore[union-attr]
        assert 1.5 <= took < 15, line
    # the failures were all counted, at DEBUG
    assert (
        sum(r.levelno == logging.DEBUG and "still unreachable" in r.message for r in caplog.records)
        > 10
    )


def test_other_errors_are_not_outages() -> None:
    outages = Outages()
    assert not outages.failed("fetch", ValueError("a bug"))
    assert outages.open_kinds() == []
    assert outages.failed("fetch", BackendError("down"))
    assert outages.open_kinds() == ["fetch"]
    outages.ok("fetch")
    assert outages.open_kinds() == []
