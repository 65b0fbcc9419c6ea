"""Redis-specific behaviour of the Redis backend, beyond the contract suite: URLs and errors,
key layout, retention, blocking fetch (wake-ups, delayed due times, cancellation), script
reloading. Tests that count commands or need a socket file run on their own redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from polyjobs import BackendUnavailableError, Queue, Worker
from polyjobs.backend import (
    CAP_CANCEL,
    CAP_CONTROL,
    CAP_DEDUP,
    CAP_DURABLE,
    CAP_FLOWS,
    CAP_FLOWS_ACROSS_QUEUES,
    CAP_GLOBAL_CONCURRENCY,
    CAP_GROUPS,
    CAP_METRICS,
    CAP_RATE_LIMIT,
    CAP_SHARED,
    Finish,
    NewJob,
)
from polyjobs.backends.redis import RedisBackend
from polyjobs.backends.redis.connection import RedisUrl
from polyjobs.backends.redis.keys import EVENTS_MAXLEN, JOB_TAG, LOG_TAG, SCRIPT_KEYS, QueueKeys
from polyjobs.backends.redis.records import MISSING, NOT_A_HASH, payload
from polyjobs.backends.redis.testing import (
    RedisClusterServers,
    RedisServer,
    ReplyDroppingProxy,
    require_redis,
    spare_port,
)
from polyjobs.errors import BackendError, InvalidArgumentError
from polyjobs.job import Job
from polyjobs.options import Keep
from polyjobs.plugins import PluginHost
from tests.redis.conftest import URL


@pytest.fixture(autouse=True, scope="module")
def _redis_answers() -> None:
    require_redis(URL)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not on PATH") if os.environ.get("CI") else pytest.skip(
            "redis-server is not on PATH"
        )
    srv = RedisServer(tmp_path, unix_socket=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def _started(server: RedisServer) -> RedisServer:
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        message = "redis-server or openssl is not on PATH"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    server.start()
    return server


def new(job_id: str | None = None, *, run_at: float = 0.0, priority: int = 0) -> NewJob:
    return NewJob("t", "{}", {}, time.time(), job_id, run_at, priority)


# -- URLs, errors, registration --------------------------------------------------------------
def test_url_prefix_and_redaction() -> None:
    parsed = RedisUrl.parse(
        "redis://user:s3cret@localhost:6380/2?prefix=app&health_check_interval=5"
    )
    assert parsed.prefix == "app"
    assert "prefix" not in parsed.url and "health_check_interval=5" in parsed.url
    assert "s3cret" not in parsed.redacted
    assert RedisUrl.parse("rediss://localhost").prefix == "polyjobs"
    for bad in ("a{b", "a}b", "{}", "a{b}{c}", "}a{"):
        with pytest.raises(InvalidArgumentError):
            RedisUrl.parse(f"redis://localhost/0?prefix={bad}")
    # one hash tag puts every queue in one cluster slot (flows across queues on a cluster)
    assert RedisUrl.parse("redis://localhost/0?prefix={app}").prefix == "{app}"


async def test_unreachable_server_is_one_line_without_password() -> None:
    backend = RedisBackend(f"redis://me:hunter2@127.0.0.1:{spare_port()}/0")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        await backend.open()
    message = str(info.value)
    assert "hunter2" not in message and "\n" not in message
    assert "127.0.0.1" in message
    assert time.monotonic() - started < 6
    await backend.close()


def test_plugin_registers_the_redis_schemes() -> None:
    factories = PluginHost.load(entry_points=False).backend_factories()
    for scheme in ("redis", "rediss", "unix"):
        assert isinstance(factories[scheme][0](URL), RedisBackend)  # built on demand
    base = {
        CAP_SHARED,
        CAP_DURABLE,
        CAP_RATE_LIMIT,
        CAP_CONTROL,
        CAP_FLOWS,
        CAP_DEDUP,
        CAP_METRICS,
        CAP_CANCEL,
        CAP_GLOBAL_CONCURRENCY,
        CAP_GROUPS,
    }
    assert RedisBackend(URL).capabilities == frozenset({*base, CAP_FLOWS_ACROSS_QUEUES})
    cluster = "redis://127.0.0.1:7000/0?cluster=true"
    assert RedisBackend(cluster).capabilities == frozenset(base)
    tagged = RedisBackend(f"{cluster}&prefix={{pj}}")
    assert tagged.capabilities == frozenset({*base, CAP_FLOWS_ACROSS_QUEUES})


async def test_unix_socket_url(server: RedisServer) -> None:
    assert server.socket_path is not None
    backend = RedisBackend(f"unix://{server.socket_path}?db=0&prefix=sock")
    await backend.open()
    try:
        [result] = await backend.add("q", [new("a")])
        assert result.added
        jobs = await backend.fetch("q", "w", 1, 5.0, 0.0)
        assert [j.id for j in jobs] == ["a"]
    finally:
        await backend.close()


async def test_tls_url(tmp_path: Path) -> None:
    server = _started(RedisServer(tmp_path, tls=True))
    try:
        assert server.url.startswith("rediss://")
        backend = RedisBackend(server.url)
        await backend.open()
        try:
            await backend.add("tls", [new("a")])
            assert [j.id for j in await backend.fetch("tls", "w", 1, 5.0, 0.0)] == ["a"]
        finally:
            await backend.close()
        plain = RedisBackend(f"redis://localhost:{server.port}/0")
        with pytest.raises(BackendUnavailableError):
            await plain.open()
    finally:
        server.kill()


async def test_password_url_and_a_wrong_password(tmp_path: Path) -> None:
    server = _started(RedisServer(tmp_path, password="pw-right"))
    try:
        backend = RedisBackend(server.url)
        await backend.open()
        assert (await backend.add("auth", [new("a")]))[0].added
        await backend.close()
        wrong = RedisBackend(f"redis://default:pw-wrong@127.0.0.1:{server.port}/3")
        with pytest.raises(BackendUnavailableError) as info:
            await wrong.open()
        assert "pw-wrong" not in str(info.value) and "/3" in str(info.value)
    finally:
        server.kill()


# -- layout and retention --------------------------------------------------------------------
async def test_every_key_of_a_queue_shares_its_hash_tag(backend: RedisBackend, prefix: str) -> None:
    queue = Queue("tagged", backend)
    await queue.add("x", {}, delay=60)
    job = await queue.add("y", {})
    await queue.upsert_schedule("s", every=60)
    await job.log("line")
    await backend.pause("tagged")
    keys = {k async for k in backend.redis.scan_iter(match=f"{prefix}:*")}
    assert f"{prefix}:queues" in keys
    keys.discard(f"{prefix}:queues")
    assert keys and all(k.startswith(f"{prefix}:{{tagged}}:") for k in keys)
    assert await backend.queues() == ["tagged"]
    await backend.obliterate("tagged")
    assert not [k async for k in backend.redis.scan_iter(match=f"{prefix}:*")]


async def test_retention_keeps_memory_bounded(backend: RedisBackend, prefix: str) -> None:
    queue = Queue("kept", backend)
    await queue.add_bulk([("x", {"i": i}, {"remove_on_complete": 10}) for i in range(500)])

    async def noop(job: Job) -> int:
        return 1

    worker = Worker("kept", noop, backend, concurrency=20, schedule=False)
    await asyncio.wait_for(worker.run(burst=True), 20)
    counts = await backend.counts("kept")
    assert counts["completed"] == 10 and counts["waiting"] == counts["active"] == 0
    job_keys = [k async for k in backend.redis.scan_iter(match=f"{prefix}:{{kept}}:j:*")]
    assert len(job_keys) == 10


def test_no_job_id_names_another_key() -> None:
    qk = QueueKeys("p", "q")
    fixed = set(qk.script_keys)
    assert JOB_TAG != LOG_TAG
    assert not [k for k in SCRIPT_KEYS if k.startswith((JOB_TAG, LOG_TAG))]
    for job_id in ("x", "x:log", "wait", "j:1", "l:1", "1", ""):
        assert qk.job(job_id) not in fixed and qk.log(job_id) not in fixed
        assert qk.job(job_id) != qk.log(job_id)
        for other in ("x", "x:log", "j:1", "l:1", "1"):
            assert qk.job(job_id) != qk.log(other)


async def test_job_ids_that_look_like_keys_are_jobs_of_their_own(backend: RedisBackend) -> None:
    queue = Queue("looks", backend)
    ids = ["x", "x:log", "j:x", "l:x", "wait", "meta"]
    for job_id in ids:
        await queue.add("n", {"id": job_id}, job_id=job_id)
        await backend.add_log("looks", job_id, f"line of {job_id}", 10)
    for job_id in ids:
        job = await queue.get_job(job_id)
        assert job is not None and job.data == {"id": job_id}
        assert await queue.logs(job_id) == [f"line of {job_id}"]
    assert await queue.remove("x")
    assert await queue.logs("x") == []
    for job_id in ids[1:]:
        job = await queue.get_job(job_id)
        assert job is not None and job.data == {"id": job_id}
        assert await queue.logs(job_id) == [f"line of {job_id}"]
    assert (await queue.counts())["waiting"] == len(ids) - 1


async def test_unusable_job_records_end_failed_and_no_script_stops_half_way(
    backend: RedisBackend,
) -> None:
    """A job key of another type (or a hash gone) is never written to: the script that meets it
    fails that job with the reason and carries on with the others, wherever it meets it."""
    qk = QueueKeys(backend.prefix, "broken")
    queue = Queue("broken", backend)
    for job_id in ("a", "b", "c", "gone"):
        await queue.add("n", {}, job_id=job_id, remove_on_fail=False)
    await backend.redis.set(qk.job("b"), "not a hash")
    await backend.redis.delete(qk.job("gone"))
    taken = await backend.fetch("broken", "w", 10, 30.0, 0.0)
    assert sorted(j.id for j in taken) == ["a", "c"]
    failed = {j.id: j.failed_reason for j in await queue.jobs("failed")}
    assert failed == {"b": NOT_A_HASH, "gone": MISSING}
    assert await backend.redis.get(qk.job("b")) == "not a hash"  # left as it was

    await queue.add("n", {}, job_id="later", delay=0.05, remove_on_fail=False)
    await backend.redis.set(qk.job("later"), "not a hash")
    await asyncio.sleep(0.1)
    assert await backend.fetch("broken", "w", 10, 30.0, 0.0) == []  # promoted, then failed
    await queue.add("n", {}, job_id="e", remove_on_fail=False)
    (active,) = await backend.fetch("broken", "w2", 1, 0.05, 0.0)
    await backend.redis.set(qk.job(active.id), "not a hash")
    await asyncio.sleep(0.1)
    assert [(s.job_id, s.failed) for s in await backend.recover_stalled("broken", 5)] == [
        ("e", True)
    ]
    counts = await backend.counts("broken")
    assert counts == {
        "waiting": 0,
        "active": 2,
        "delayed": 0,
        "waiting-children": 0,
        "completed": 0,
        "failed": 4,
    }
    with pytest.raises(BackendError, match="not a hash"):
        await queue.get_job("b")
    assert await queue.remove("b") and await backend.redis.exists(qk.job("b")) == 0
    assert (await backend.counts("broken"))["failed"] == 3


async def test_undecodable_fields_fail_the_job_when_taken(backend: RedisBackend) -> None:
    qk = QueueKeys(backend.prefix, "bad")
    queue = Queue("bad", backend)
    for i in range(4):
        await queue.add("n", {"i": i}, job_id=f"j{i}", remove_on_fail=False)
    await backend.redis.hset(qk.job("j1"), "d", "{not json")
    await backend.redis.hset(qk.job("j2"), "as", "many")
    listed = {j.id: j.failed_reason for j in await queue.jobs("waiting")}
    assert listed["j1"] == "job record is corrupted: data is not JSON"
    assert listed["j2"] == "job record is corrupted: attempts started is not an integer"
    taken = await backend.fetch("bad", "w", 10, 30.0, 0.0)
    assert sorted(j.id for j in taken) == ["j0", "j2", "j3"]  # the take rewrites "as"
    job = await queue.get_job("j1")
    assert job is not None and job.state == "failed" and job.data is None
    assert job.failed_reason == "job record is corrupted: data is not JSON"


async def test_a_field_that_is_not_utf8_fails_its_job_and_keeps_the_connection(
    backend: RedisBackend,
) -> None:
    """Bytes that are not UTF-8 in a job's record are a corruption of that job: it is failed
    as corrupted when taken, and the connection (shared by every call) stays up. Before, the
    reply's decoding raised inside the connection's reader, which dropped the connection on
    every try: the worker logged the backend as unreachable forever and the job never ran."""
    qk = QueueKeys(backend.prefix, "utf8")
    queue = Queue("utf8", backend)
    await queue.add("n", {"i": 0}, job_id="bad", remove_on_fail=False)
    await queue.add("n", {"i": 1}, job_id="good")
    await backend.redis.hset(qk.job("bad"), "d", b"\xff\xfe")
    ran: list[str] = []

    async def work(job: Job) -> None:
        ran.append(job.id)

    worker = Worker("utf8", work, backend, schedule=False, block=0.05)
    await asyncio.wait_for(worker.run(burst=True), 10)
    assert ran == ["good"]
    job = await queue.get_job("bad")
    assert job is not None and job.state == "failed"
    assert job.failed_reason == "job record is corrupted: data is not JSON"


async def test_integers_beyond_64_bits_survive_data_progress_and_returnvalue(
    backend: RedisBackend,
) -> None:
    big = {"n": -(2**63) - 1, "m": 2**70, "list": [2**64, -(2**100)], "small": 2**64 - 1}
    queue = Queue("bigint", backend)
    await queue.add("b", big, job_id="b", remove_on_complete=False)

    async def work(job: Job) -> dict[str, object]:
        assert job.data == big
        await job.update_progress(big)
        return big

    worker = Worker("bigint", work, backend, schedule=False)
    await asyncio.wait_for(worker.run(burst=True), 10)
    job = await queue.get_job("b")
    assert job is not None and job.state == "completed"
    assert job.data == big and job.progress == big and job.returnvalue == big
    (listed,) = await queue.jobs("completed")
    assert listed.returnvalue == big


def test_payloads_decode_exactly_as_the_standard_library_does() -> None:
    texts = [
        '{"t":1732930000.123456}',
        "[18446744073709551616, -9223372036854775809, 1e400, NaN, -Infinity]",
        '"\\ud800 lone surrogate"',
        ' {"a": 1}',  # leading whitespace
        '{"a": 1} \n',  # trailing whitespace
        "null",
        "0",
        '{"deep": ' * 50 + "1" + "}" * 50,
    ]
    for text in texts:
        found, expected = payload(text), json.loads(text)
        assert repr(found) == repr(expected), text
    for bad in ["{not json", '{"a": 1} x', "[1,", "'single'"]:
        with pytest.raises(ValueError):
            payload(bad)
    assert payload("") is None and payload(None) is None


# -- blocking fetch --------------------------------------------------------------------------
async def test_blocked_fetch_wakes_on_add(backend: RedisBackend) -> None:
    fetch = asyncio.create_task(backend.fetch("wake", "w", 5, 10.0, 5.0))
    await asyncio.sleep(0.1)
    assert not fetch.done()
    started = time.monotonic()
    await backend.add("wake", [new("j1")])
    jobs = await asyncio.wait_for(fetch, 4)
    assert [j.id for j in jobs] == ["j1"]
    assert time.monotonic() - started < 2.5  # the add woke it, not the 5 s block


async def test_one_bulk_add_wakes_every_blocked_worker_it_has_jobs_for(
    backend: RedisBackend,
) -> None:
    fetches = [
        asyncio.create_task(backend.fetch("cascade", f"w{i}", 1, 10.0, 5.0)) for i in range(3)
    ]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await backend.add("cascade", [new(f"j{i}") for i in range(3)])
    taken = await asyncio.wait_for(asyncio.gather(*fetches), 4)
    assert sorted(j.id for jobs in taken for j in jobs) == ["j0", "j1", "j2"]
    assert time.monotonic() - started < 2.5  # woken, not the 5 s block


async def test_blocked_fetch_wakes_when_a_delayed_job_falls_due(backend: RedisBackend) -> None:
    fetch = asyncio.create_task(backend.fetch("due", "w", 1, 10.0, 5.0))
    await asyncio.sleep(0.05)
    await backend.add("due", [new("later", run_at=time.time() + 0.3)])
    started = time.monotonic()
    jobs = await asyncio.wait_for(fetch, 3)
    elapsed = time.monotonic() - started
    assert [j.id for j in jobs] == ["later"]
    assert 0.15 < elapsed < 2.5  # woken at 0.3 s, not at the 5 s block


async def test_fetch_takes_several_jobs_in_priority_order(backend: RedisBackend) -> None:
    await backend.add("many", [new(f"p{i}", priority=i % 3) for i in range(9)])
    jobs = await backend.fetch("many", "w", 4, 10.0, 0.0)
    assert [j.id for j in jobs] == ["p0", "p3", "p6", "p1"]
    assert all(j.state == "active" and j.worker == "w" for j in jobs)


async def test_cancelled_fetch_does_not_poison_the_connection(backend: RedisBackend) -> None:
    for _ in range(3):
        fetch = asyncio.create_task(backend.fetch("cancel", "w", 1, 10.0, 5.0))
        await asyncio.sleep(0.05)
        fetch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetch
    await backend.add("cancel", [new("after")])
    jobs = await asyncio.wait_for(backend.fetch("cancel", "w", 1, 10.0, 1.0), 2)
    assert [j.id for j in jobs] == ["after"]
    fetch = asyncio.create_task(backend.fetch("cancel", "w", 1, 10.0, 5.0))
    await asyncio.sleep(0.05)
    await backend.add("cancel", [new("next")])
    assert [j.id for j in await asyncio.wait_for(fetch, 2)] == ["next"]


async def test_idle_fetch_does_not_poll(server: RedisServer) -> None:
    backend = RedisBackend(server.url)
    await backend.open()
    try:
        await backend.add("idle", [new("x", run_at=time.time() + 3600)])
        await backend.fetch("idle", "w", 1, 10.0, 0.2)  # consumes the add's wake-up
        admin = server.client()
        admin.config_resetstat()
        await backend.fetch("idle", "w", 1, 10.0, 1.0)
        stats = admin.info("commandstats")
        calls = {k: int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_")}
        admin.close()
        # one look, one blocking wait of the whole second, one look after it
        assert calls["cmdstat_evalsha"] == 2
        assert calls["cmdstat_bzpopmin"] == 1
    finally:
        await backend.close()


@contextlib.asynccontextmanager
async def _dropping(server: RedisServer) -> AsyncIterator[tuple[RedisBackend, ReplyDroppingProxy]]:
    """A backend whose replies go through a proxy that drops them while ``proxy.drop``."""
    proxy = ReplyDroppingProxy(server.port)
    await proxy.start()
    backend = RedisBackend(proxy.url)
    await backend.open()
    try:
        yield backend, proxy
    finally:
        await backend.close()
        await proxy.close()


async def test_jobs_of_a_lost_reply_are_handed_back(server: RedisServer) -> None:
    async with _dropping(server) as (backend, proxy):
        await backend.add("lost", [new("a"), new("b"), new("c")])
        await backend.fetch("warm-up", "w0", 1, 60.0, 0.0)  # loads the script
        proxy.drop = True
        with pytest.raises(BackendError):
            await backend.fetch("lost", "w1", 2, 60.0, 0.0)
        proxy.drop = False
        assert (await backend.counts("lost"))["active"] == 2  # taken, but nobody knows
        [job] = await backend.fetch("lost", "w1", 1, 60.0, 0.0)
        assert job.id in ("a", "b")  # handed back to the front, then taken again
        assert (await backend.counts("lost"))["active"] == 1
        others = await backend.fetch("lost", "w2", 5, 60.0, 0.0)
        assert sorted(j.id for j in others) == sorted({"a", "b", "c"} - {job.id})


async def test_a_finish_hands_back_the_jobs_of_a_lost_reply(server: RedisServer) -> None:
    """The finish+fetch after a take whose reply was lost hands that take's job back first,
    finishes its own job and takes the handed-back job again (all in one call)."""
    async with _dropping(server) as (backend, proxy):
        await backend.add("lostf", [new("a"), new("b"), new("c")])
        [first] = await backend.fetch("lostf", "w1", 1, 60.0, 0.0)
        proxy.drop = True
        with pytest.raises(BackendError):
            await backend.fetch("lostf", "w1", 1, 60.0, 0.0)
        proxy.drop = False
        assert (await backend.counts("lostf"))["active"] == 2
        done = Finish(first.id, "completed", 1, time.time(), '"ok"', keep=Keep(count=5))
        result = await backend.finish("lostf", "w1", [done], 1, 60.0)
        assert result.lost == []
        [again] = result.jobs
        assert again.id == "b"  # the lost take's job, handed back to the front, taken again
        counts = await backend.counts("lostf")
        assert (counts["active"], counts["completed"], counts["waiting"]) == (1, 1, 1)
        stored = await backend.get_job("lostf", first.id)
        assert stored is not None and stored.returnvalue == "ok"


async def test_scripts_reload_after_script_flush(backend: RedisBackend) -> None:
    await backend.add("flush", [new("a")])
    await backend.redis.script_flush()
    [result] = await backend.add("flush", [new("b")])
    assert result.added
    assert (await backend.counts("flush"))["waiting"] == 2


async def test_pick_up_latency_is_about_a_millisecond(backend: RedisBackend) -> None:
    queue = Queue("latency", backend)
    seen: list[float] = []
    done = asyncio.Event()

    async def proc(job: Job) -> None:
        seen.append(time.time() - job.data["t"])
        if len(seen) == 30:
            done.set()

    worker = Worker("latency", proc, backend, concurrency=1, schedule=False)
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(0.1)
    for _ in range(30):
        await queue.add("x", {"t": time.time()})
        await asyncio.sleep(0.01)
    await asyncio.wait_for(done.wait(), 5)
    await worker.close(grace=1)
    await run
    seen.sort()
    # p50 is ~1 ms on an idle machine; the bound is loose for busy CI machines, and still far
    # below what polling at the worker's block interval would give
    assert seen[len(seen) // 2] < 0.05


# -- events ----------------------------------------------------------------------------------
async def test_events_can_be_followed_and_the_stream_stays_bounded(
    backend: RedisBackend,
) -> None:
    follower = asyncio.create_task(backend.read_events("ev", "$", block=5))
    await asyncio.sleep(0.05)
    queue = Queue("ev", backend)
    job = await queue.add("x", {})
    [(first_id, first)] = await asyncio.wait_for(follower, 2)
    assert first == {"event": "added", "id": job.id, "name": "x", "state": "waiting"}

    async def proc(j: Job) -> str:
        await j.update_progress(50)
        return "ok"

    await Worker("ev", proc, backend, schedule=False).run(burst=True)
    later = [fields for _, fields in await backend.read_events("ev", first_id)]
    assert [e["event"] for e in later] == ["progress", "completed"]
    assert later[1]["returnvalue"] == '"ok"'

    await backend.add("ev", [new() for _ in range(EVENTS_MAXLEN + 2000)])
    assert await backend.redis.xlen(QueueKeys(backend.prefix, "ev").key("events")) < (
        EVENTS_MAXLEN + 1000
    )


# -- Redis Cluster ---------------------------------------------------------------------------
async def test_queues_on_a_redis_cluster(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server or redis-cli is not on PATH"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    servers = RedisClusterServers(tmp_path)
    servers.start()
    backend = RedisBackend(servers.url)
    try:
        await backend.open()
        names = [f"q{i}" for i in range(6)]  # spread over the nodes' slots
        for name in names:
            queue = Queue(name, backend)
            await queue.add_bulk([("x", {"i": i}) for i in range(20)])
            await queue.add("later", {}, delay=0.2)
            await queue.upsert_schedule("s", every=3600)

        async def double(job: Job) -> int:
            return 2 * int(job.data.get("i", 0))

        for name in names:
            worker = Worker(name, double, backend, concurrency=5, block=0.2)
            await asyncio.wait_for(worker.run(burst=True), 10)
            counts = await backend.counts(name)
            assert counts["completed"] == 21 and counts["waiting"] == counts["delayed"] == 0
        assert await backend.queues() == names
        fetch = asyncio.create_task(backend.fetch("q0", "w", 1, 5.0, 5.0))
        await asyncio.sleep(0.05)
        await backend.add("q0", [new("woken")])
        assert [j.id for j in await asyncio.wait_for(fetch, 2)] == ["woken"]
        for name in names:
            await backend.obliterate(name)
        assert await backend.queues() == []
    finally:
        await backend.close()
        servers.kill()


async def test_jobs_taken_together_with_the_same_options_do_not_see_each_others_changes(
    backend: RedisBackend,
) -> None:
    defaults = {"attempts": 3, "backoff": {"type": "fixed", "delay": 1}}
    queue = Queue("same-opts", backend, default_options=defaults)
    await queue.add("x", 1)
    await queue.add("x", 2)
    first, second = await backend.fetch("same-opts", "w", 2, 30.0, 0.0)
    assert first.opts == second.opts and first.opts["attempts"] == 3
    backoff = json.loads(json.dumps(first.opts["backoff"]))  # as stored (normalized)
    assert backoff["delay"] == 1
    job = Job(first, "same-opts", backend)
    job.opts["attempts"] = 9  # (not what a processor should do: opts is read-only)
    job.opts["backoff"]["delay"] = 999  # nor this, one level down
    assert job.opts["attempts"] == 9 and job.opts["backoff"]["delay"] == 999
    assert second.opts["attempts"] == 3 == Job(second, "same-opts", backend).opts["attempts"]
    assert second.opts["backoff"] == backoff == Job(second, "same-opts", backend).opts["backoff"]
    await queue.add("x", 3)
    [third] = await backend.fetch("same-opts", "w", 1, 30.0, 0.0)  # a fetch of its own
    assert third.opts["attempts"] == 3 and third.opts == second.opts
    assert Job(third, "same-opts", backend).opts["backoff"] == backoff


@pytest.mark.parametrize("lease", [1e13, float("inf")])
async def test_a_lease_of_centuries_or_inf_is_not_stalled_at_once(
    backend: RedisBackend, lease: float
) -> None:
    """Lease ends are whole microseconds in the active set: past 2^53 us (about 285 years)
    they must not wrap to a negative score, which the next stalled check would take as long
    expired — on the fetch, on the finish+fetch and on a renewal."""
    queue = Queue("q", backend)
    first, second = await queue.add("x", 1), await queue.add("x", 2)
    [taken] = await backend.fetch("q", "w", 1, lease, 0.0)
    assert taken.id == first.id
    assert await backend.recover_stalled("q", 1) == []
    assert await backend.extend("q", "w", [first.id], lease) == []
    assert await backend.recover_stalled("q", 1) == []
    ended = Finish(first.id, "completed", 1, time.time(), "null")
    done = await backend.finish("q", "w", [ended], 1, lease)
    assert done.lost == [] and [r.id for r in done.jobs] == [second.id]
    assert await backend.recover_stalled("q", 1) == []
    assert (await queue.counts())["active"] == 1


async def test_an_options_dict_changed_between_adds_is_stored_as_it_was_at_each(
    backend: RedisBackend,
) -> None:
    """The options of each add are stored as they are at that add, even when one dict is
    changed in place between adds to a value equal in Python (1 == True == 1.0)."""
    opts: dict[str, Any] = {"flag": 1}
    [first] = await backend.add("q", [NewJob("t", "{}", opts, time.time())])
    opts["flag"] = True
    [second] = await backend.add("q", [NewJob("t", "{}", opts, time.time())])
    stored = {j.id: j.opts["flag"] for j in await backend.fetch("q", "w", 2, 30.0, 0.0)}
    assert stored == {first.id: 1, second.id: True}
    assert type(stored[first.id]) is int and type(stored[second.id]) is bool


LONG_ID = "-- a member longer than zset-max-listpack-value: the set becomes a skiplist --"


async def _finish_all(backend: RedisBackend, queue: str, ids: list[str], keep: int) -> None:
    taken = await backend.fetch(queue, "w", len(ids), 30.0, 0.0)
    assert sorted(r.id for r in taken) == sorted(ids)
    now = time.time()
    ends = [
        Finish(job_id, "completed", 1, now + i, "1", keep=Keep(count=keep))
        for i, job_id in enumerate(ids)
    ]
    assert (await backend.finish(queue, "w", ends, 0, 30.0)).lost == []


async def test_a_retained_finished_set_is_a_skiplist(backend: RedisBackend) -> None:
    """Retention turns a small finished set into a skiplist (a listpack's ZADD walks every
    member: the finish path's costliest command at the 100 jobs kept by default)."""
    queue = Queue("sk", backend)
    ids = [(await queue.add("x", i)).id for i in range(4)]
    await _finish_all(backend, "sk", ids, 3)
    completed = QueueKeys(backend.prefix, "sk").key("completed")
    assert await backend.redis.object("encoding", completed) == "skiplist"
    assert await backend.redis.zrange(completed, 0, -1) == ids[1:]
    assert (await queue.counts())["completed"] == 3


async def test_a_job_named_like_the_skiplist_member_keeps_its_place(server: RedisServer) -> None:
    """Where members that long still fit a listpack (a raised zset-max-listpack-value), the
    member retention adds to turn the set, were it a job's id, leaves that job in place with
    its score (Queue refuses ids with spaces; the backend itself takes any)."""
    server.client().config_set("zset-max-listpack-value", 200)
    backend = RedisBackend(f"unix://{server.socket_path}?db=0&prefix=sk")
    await backend.open()
    try:
        queue = Queue("sk", backend)
        ids = [(await queue.add("x", i)).id for i in range(2)]
        [added] = await backend.add("sk", [new(LONG_ID)])
        assert added.added
        await _finish_all(backend, "sk", [*ids, LONG_ID], 3)
        completed = QueueKeys("sk", "sk").key("completed")
        kept = cast(
            "list[tuple[str, float]]",
            await backend.redis.zrange(completed, 0, -1, withscores=True),
        )
        assert [member for member, _ in kept] == [*ids, LONG_ID]
        assert kept[-1][1] > kept[0][1] > 0
        record = await backend.get_job("sk", LONG_ID)
        assert record is not None and record.state == "completed"
    finally:
        await backend.close()


async def test_retention_drops_the_oldest_at_most_1000_per_call(backend: RedisBackend) -> None:
    """A finish trims its set to the newest ``count`` by dropping the oldest first, at most
    1,000 per call (so a script stays short); the next call goes on."""
    queue = Queue("cap", backend)
    ids = [j.id for j in await queue.add_bulk([("x", i, {}) for i in range(1008)])]
    taken = await backend.fetch("cap", "w", 1008, 60.0, 0.0)
    assert [r.id for r in taken] == ids
    now = time.time()

    def end(i: int, keep: Keep) -> Finish:
        return Finish(ids[i], "completed", 1, now + i, "1", keep=keep)

    done = await backend.finish("cap", "w", [end(i, Keep()) for i in range(1005)], 0, 60.0)
    assert done.lost == []
    completed = QueueKeys(backend.prefix, "cap").key("completed")
    assert await backend.redis.zcard(completed) == 1005
    assert (await backend.finish("cap", "w", [end(1005, Keep(count=2))], 0, 60.0)).lost == []
    # 1006 there, 1004 over the count: the oldest 1000 went, with their records
    assert await backend.redis.zrange(completed, 0, -1) == ids[1000:1006]
    assert await queue.get_job(ids[999]) is None and await queue.get_job(ids[1000]) is not None
    assert (await backend.finish("cap", "w", [end(1006, Keep(count=2))], 0, 60.0)).lost == []
    assert await backend.redis.zrange(completed, 0, -1) == ids[1005:1007]
    assert await queue.get_job(ids[1004]) is None
