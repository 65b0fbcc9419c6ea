"""Redis-specific behaviour of the rate limiter and the control channel, beyond the contract
suites: waits without polling, the finish-and-fetch path, holds, key layout, the free hot path.
Tests that count commands run on their own redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyjobs import Queue, Worker
from polyjobs.backend import Finish, NewJob
from polyjobs.backends.redis import RedisBackend
from polyjobs.backends.redis.keys import CONTROL_KEEP, QueueKeys, control_key
from polyjobs.backends.redis.testing import RedisServer, require_redis
from polyjobs.job import Job
from polyjobs.options import RateLimit
from tests.redis.conftest import URL


@pytest.fixture(autouse=True, scope="module")
def _redis_answers() -> None:
    require_redis(URL)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not on PATH"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    srv = RedisServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def new(job_id: str) -> NewJob:
    return NewJob("t", "{}", {}, time.time(), job_id)


def done(job_id: str) -> Finish:
    return Finish(job_id, "completed", 1, time.time(), returnvalue_json="null")


def _calls(server: RedisServer) -> dict[str, int]:
    admin = server.client()
    try:
        stats = admin.info("commandstats")
    finally:
        admin.close()
    return {k[len("cmdstat_") :]: int(v["calls"]) for k, v in stats.items()}


def _reset(server: RedisServer) -> None:
    admin = server.client()
    try:
        admin.config_resetstat()
    finally:
        admin.close()


async def test_a_limited_fetch_waits_for_the_window_without_polling(server: RedisServer) -> None:
    backend = RedisBackend(server.url)
    await backend.open()
    try:
        await backend.set_rate_limit("lim", RateLimit(1, 1.0))
        await backend.add("lim", [new("a"), new("b")])
        [first] = await backend.fetch("lim", "w", 5, 30.0, 0.0)
        assert await backend.fetch("lim", "w", 5, 30.0, 0.05) == []  # takes the add's wake-up
        _reset(server)
        started = time.monotonic()
        [second] = await backend.fetch("lim", "w", 5, 30.0, 10.0)
        elapsed = time.monotonic() - started
        calls = _calls(server)
        assert (first.id, second.id) == ("a", "b")
        assert second.processed_on is not None and first.processed_on is not None
        assert second.processed_on - first.processed_on >= 1.0
        assert 0.8 < elapsed < 3.0  # woke when the window freed, not at the 10 s block
        # one look (held back: "look again when the window frees"), one wait, one look
        assert (calls["evalsha"], calls["bzpopmin"]) == (2, 1), calls
    finally:
        await backend.close()


async def test_the_hot_path_without_a_limit_touches_no_limiter(
    server: RedisServer, tmp_path: Path
) -> None:
    backend = RedisBackend(server.url)
    await backend.open()
    try:
        queue = Queue("free", backend)
        await queue.add_bulk([("x", {"i": i}) for i in range(200)])
        _reset(server)

        async def noop(job: Job) -> None:
            return None

        await asyncio.wait_for(Worker("free", noop, backend, concurrency=10).run(burst=True), 20)
        calls = _calls(server)
        counts = await backend.counts("free")
        assert counts["waiting"] == counts["active"] == counts["failed"] == 0
        assert "zremrangebyscore" not in calls  # the window is never trimmed
        assert await backend.redis.exists(QueueKeys(backend.prefix, "free").key("limiter")) == 0
    finally:
        await backend.close()


async def test_finish_and_fetch_respects_the_window(backend: RedisBackend) -> None:
    await backend.set_rate_limit("fin", RateLimit(2, 30.0))
    await backend.add("fin", [new(f"j{i}") for i in range(5)])
    taken = await backend.fetch("fin", "w", 5, 30.0, 0.0)
    assert [j.id for j in taken] == ["j0", "j1"]
    result = await backend.finish("fin", "w", [done("j0"), done("j1")], 5, 30.0)
    assert result.lost == [] and result.jobs == []  # the window is full
    limiter = QueueKeys(backend.prefix, "fin").key("limiter")
    assert await backend.redis.zcard(limiter) == 2
    await backend.set_rate_limit("fin", None)
    assert await backend.redis.exists(limiter) == 0
    result = await backend.finish("fin", "w", [], 5, 30.0)
    assert [j.id for j in result.jobs] == ["j2", "j3", "j4"]


async def test_a_hold_extends_only_and_a_blocked_fetch_waits_for_it(
    backend: RedisBackend,
) -> None:
    now = time.time()
    await backend.hold("held", now + 0.6)
    await backend.hold("held", now + 0.1)  # earlier: changes nothing
    meta = QueueKeys(backend.prefix, "held").key("meta")
    assert float(str(await backend.redis.hget(meta, "hold"))) == now + 0.6
    await backend.add("held", [new("x")])
    assert await backend.fetch("held", "w", 1, 30.0, 0.0) == []
    [job] = await asyncio.wait_for(backend.fetch("held", "w", 1, 30.0, 10.0), 3)
    assert job.processed_on is not None and job.processed_on >= now + 0.6
    assert time.time() - (now + 0.6) < 2.0  # well before the 10 s block
    assert await backend.get_rate_limit("held") is None  # a hold is not a limit


async def test_limit_keys_share_the_hash_tag_and_control_is_global(
    backend: RedisBackend, prefix: str
) -> None:
    await backend.set_rate_limit("tagged", RateLimit(3, 1.0))
    await backend.hold("tagged", time.time() - 1)
    await backend.add("tagged", [new("a")])
    await backend.fetch("tagged", "w", 1, 30.0, 0.0)
    await backend.send_control("ping", "{}")
    keys = {k async for k in backend.redis.scan_iter(match=f"{prefix}:*")}
    assert control_key(prefix) in keys and f"{prefix}:queues" in keys
    tagged = keys - {control_key(prefix), f"{prefix}:queues"}
    assert QueueKeys(prefix, "tagged").key("limiter") in tagged
    assert all(k.startswith(f"{prefix}:{{tagged}}:") for k in tagged)
    await backend.obliterate("tagged")
    left = {k async for k in backend.redis.scan_iter(match=f"{prefix}:*")}
    assert left == {control_key(prefix)}


async def test_control_keeps_the_newest_and_times_increase_across_clients(
    backend: RedisBackend,
) -> None:
    other = RedisBackend(backend.url)
    await other.open()
    try:
        sent = await asyncio.gather(
            *(
                (backend if n % 2 else other).send_control("ping", json.dumps({"n": n}))
                for n in range(CONTROL_KEEP + 30)
            )
        )
    finally:
        await other.close()
    times = sorted(m.at for m in sent)
    assert len(set(times)) == len(times)  # strictly increasing: no two alike
    kept = await backend.control_messages(0.0)
    assert len(kept) == CONTROL_KEEP
    assert [m.at for m in kept] == times[-CONTROL_KEEP:]
    newest = max(sent, key=lambda m: m.at)
    assert kept[-1] == newest


async def test_a_lowered_limit_waits_until_enough_starts_left_the_window(
    server: RedisServer,
) -> None:
    backend = RedisBackend(server.url)
    await backend.open()
    try:
        await backend.set_rate_limit("low", RateLimit(3, 1.0))
        await backend.add("low", [new(f"j{i}") for i in range(4)])
        first = (await backend.fetch("low", "w", 1, 30.0, 0.0))[0].processed_on
        for _ in range(2):
            await asyncio.sleep(0.2)
            await backend.fetch("low", "w", 1, 30.0, 0.0)
        await backend.set_rate_limit("low", RateLimit(1, 1.0))  # three starts in the window
        assert await backend.fetch("low", "w", 1, 30.0, 0.05) == []  # takes the wake-up
        _reset(server)
        [job] = await backend.fetch("low", "w", 1, 30.0, 10.0)
        calls = _calls(server)
        assert first is not None and job.processed_on is not None
        assert 1.4 <= job.processed_on - first < 3.0  # when the third start left the window
        assert (calls["evalsha"], calls["bzpopmin"]) == (2, 1), calls
    finally:
        await backend.close()
