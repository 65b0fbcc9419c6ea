"""Job groups in the engine: options, QueueSpec limits applied by a Runtime, and
GroupRateLimitError from a sandboxed processor holding only its group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from polyjobs import (
    GroupRateLimitError,
    InvalidArgumentError,
    Job,
    JobOptions,
    Queue,
    QueueSpec,
    RateLimit,
    RateLimitError,
    Runtime,
    Worker,
    open_backend,
)
from polyjobs.backend import Backend
from tests.engine import sandbox_procs


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with open_backend("memory://") as opened:
        yield opened


def test_group_is_a_stored_option() -> None:
    opts = JobOptions.parse({"group": "wallet-0xabc"})
    assert opts.to_json()["group"] == "wallet-0xabc"
    assert JobOptions.from_json(opts.to_json()).group == "wallet-0xabc"
    assert "group" not in JobOptions.parse({}).to_json()  # jobs without one store nothing
    assert JobOptions.from_json({"group": "bad group"}).group is None  # a bad stored value
    with pytest.raises(InvalidArgumentError, match="group"):
        JobOptions.parse({"group": ""})


def test_group_rate_limit_error_is_a_rate_limit_error() -> None:
    exc = GroupRateLimitError(2.5)
    assert isinstance(exc, RateLimitError) and exc.seconds == 2.5
    assert "group rate-limited" in str(exc)
    with pytest.raises(InvalidArgumentError):
        GroupRateLimitError(-1)


def test_queue_spec_checks_its_group_limits() -> None:
    with pytest.raises(InvalidArgumentError, match="group concurrency"):
        QueueSpec("q", sandbox_procs.pid, group_concurrency=0)


async def test_a_runtime_applies_the_specs_group_limits(backend: Backend) -> None:
    async def noop(job: Job) -> Any:
        return None

    spec = QueueSpec("grouped", noop, group_concurrency=2, group_rate_limit=RateLimit(5, 1.0))
    runtime = Runtime([spec], backend, schedule=False)
    await runtime.start()
    try:
        queue = Queue("grouped", backend)
        assert await queue.group_concurrency() == 2
        assert await queue.group_rate_limit() == RateLimit(5, 1.0)
    finally:
        await runtime.stop(1.0)


async def test_a_sandboxed_group_rate_limit_error_holds_only_its_group(
    backend: Backend, tmp_path: Path
) -> None:
    queue = Queue("sb", backend)
    mark = str(tmp_path / "limited-once")
    limited = await queue.add("send", {"n": 0, "limited": mark}, group="hook-a")
    later = await queue.add("send", {"n": 1}, group="hook-a")
    others = [await queue.add("send", {"n": i}, group="hook-b") for i in range(2, 5)]
    started = time.time()
    worker = Worker("sb", sandbox_procs.webhook_429, backend, sandbox=True, block=0.2)
    await asyncio.wait_for(worker.run(burst=True), 60)
    done = {j.id: j for j in await queue.jobs("completed")}
    assert set(done) == {limited.id, later.id, *(j.id for j in others)}
    assert done[limited.id].attempts_made == 1  # the hold counted no attempt
    # hook-b's jobs did not wait for hook-a's hold; hook-a's next job did
    first_b = min(done[j.id].processed_on or 0 for j in others)
    assert first_b - started < 0.6
    assert (done[later.id].processed_on or 0) - started >= 0.6


@pytest.mark.parametrize("signal", [GroupRateLimitError, RateLimitError])
async def test_a_rate_limit_of_nan_seconds_fails_the_job_instead_of_looping(
    backend: Backend, signal: type[RateLimitError]
) -> None:
    # NaN passed the 'delay >= 0' check: the hold could not be stored, the job went back
    # without counting an attempt and ran again at once, some 2,000 times a second
    queue = Queue("nan-hold", backend)
    await queue.add("j", 1, group="g", attempts=2)
    runs = 0

    async def proc(job: Job) -> None:
        nonlocal runs
        runs += 1
        raise signal(float("nan"))

    worker = Worker(queue.name, proc, backend, concurrency=1, block=0.05, schedule=False)
    await asyncio.wait_for(worker.run(burst=True), 10)
    assert runs == 2
    failed = await queue.jobs("failed")
    assert len(failed) == 1 and "nan" in (failed[0].failed_reason or "")


def test_the_no_groups_error_names_every_shipped_backend_with_groups() -> None:
    """`groups_of` on a backend without groups says which backends have them: every backend
    polyjobs ships that has them is named (PostgreSQL was left out after it gained them)."""
    from dataclasses import dataclass

    from polyjobs.backend import CAP_GROUPS, groups_of
    from polyjobs.backends.memory.backend import MemoryBackend
    from polyjobs.backends.postgres.backend import PostgresBackend
    from polyjobs.backends.redis.backend import RedisBackend
    from polyjobs.backends.sqlite.backend import SqliteBackend
    from polyjobs.errors import ConfigError

    @dataclass
    class Plain:
        url: str = "custom://queues"
        capabilities: frozenset[str] = frozenset()

    with pytest.raises(ConfigError) as refused:
        groups_of(Plain())  # type: ignore[arg-type]
    message = str(refused.value)
    shipped: dict[str, Any] = {
        "memory": MemoryBackend,
        "SQLite": SqliteBackend,
        "Redis": RedisBackend,
        "PostgreSQL": PostgresBackend,
    }
    for name, cls in shipped.items():
        assert (name in message) == (CAP_GROUPS in cls.capabilities), (name, message)
