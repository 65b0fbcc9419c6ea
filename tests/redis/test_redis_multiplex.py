"""The multiplexed connection that carries the Redis backend's scripts: many calls in flight on
one connection, each getting its own reply; cancelled, timed-out and cut-off calls; error
replies as redis-py's exceptions; database selection."""

from __future__ import annotations

import asyncio
import builtins
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from polyjobs import Job, Queue
from polyjobs.backend import Finish
from polyjobs.backends.redis import RedisBackend, connection
from polyjobs.backends.redis.backend import ADD_CALLS, JOIN_MAX
from polyjobs.backends.redis.multiplex import Head, Multiplexed, available
from polyjobs.backends.redis.testing import RedisServer
from polyjobs.errors import BackendError
from tests.redis.conftest import URL

pytestmark = pytest.mark.skipif(not available(), reason="the multiplexed connection needs hiredis")


NAME = f"pjmux{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def conn() -> AsyncIterator[Multiplexed]:
    m = Multiplexed(URL, client_name=NAME)
    try:
        yield m
    finally:
        await m.close()


def _key() -> str:
    return f"pjmux:{uuid.uuid4().hex}"


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(
    conn: Multiplexed,
) -> None:
    key = _key()
    try:
        replies = await asyncio.gather(*(conn.call("INCRBY", key, i) for i in range(1, 201)))
        # each INCRBY ran once, in the order written: the running sums come back in order
        assert replies == [i * (i + 1) // 2 for i in range(1, 201)]
        listing = await conn.call("CLIENT", "LIST")
        assert len([c for c in listing.splitlines() if f" name={NAME} " in c]) == 1
    finally:
        await conn.call("DEL", key)


@pytest.mark.parametrize("rest", [(), ("f",), ("f", "é" * 3, "", "x" * 5000)])
def test_a_packed_head_and_the_rest_are_the_whole_command_packed(rest: tuple[str, ...]) -> None:
    import hiredis

    head = ("EVALSHA", "a" * 40, 2, "k:1", "k:2", "prefix:{q}:")
    whole = hiredis.pack_command((*head, *rest))  # type: ignore[arg-type]  # (stub: a 1-tuple)
    assert Head(*head).pack(rest) == whole


async def test_calls_after_a_packed_head_run_as_the_whole_command(conn: Multiplexed) -> None:
    key = _key()
    try:
        hset = Head("HSET", key)
        assert await conn.call_after(hset, ("a", "1", "b", "é")) == 2
        replies = await asyncio.gather(
            *(conn.call_after(hset, (f"f{i}", str(i))) for i in range(50))
        )
        assert replies == [1] * 50  # in flight together: each its own reply
        assert await conn.call("HGET", key, "b") == "é"
        assert await conn.call("HLEN", key) == 52
    finally:
        await conn.call("DEL", key)


async def test_error_replies_raise_redis_py_exceptions_and_leave_the_others_alone(
    conn: Multiplexed,
) -> None:
    key = _key()
    try:
        replies: list[object] = await asyncio.gather(
            conn.call("SET", key, "x"),
            conn.call("EVALSHA", "0" * 40, 0),
            conn.call("INCR", key),
            conn.call("GET", key),
            return_exceptions=True,
        )
        ok, missing, wrong, after = replies
        assert ok == "OK" and after == "x"
        assert isinstance(missing, NoScriptError)
        assert isinstance(wrong, ResponseError) and "not an integer" in str(wrong)
    finally:
        await conn.call("DEL", key)


async def test_a_cancelled_call_does_not_shift_the_replies_of_the_next_ones(
    conn: Multiplexed,
) -> None:
    key = _key()
    try:
        waiting = asyncio.create_task(conn.call("BLPOP", key, "0.3"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # the BLPOP's late reply (nil) is read and dropped; this call gets its own
        assert await conn.call("ECHO", "mine") == "mine"
    finally:
        await conn.call("DEL", key)


async def test_a_call_without_a_reply_in_time_fails_and_the_next_one_reconnects() -> None:
    m = Multiplexed(URL, timeout=0.2)
    try:
        first = await m.call("CLIENT", "ID")
        blocked = asyncio.create_task(m.call("BLPOP", _key(), "2"))
        await asyncio.sleep(0.01)
        behind = asyncio.create_task(m.call("ECHO", "behind"))  # its reply would come after
        for call in (blocked, behind):
            with pytest.raises(TimeoutError):
                await call
        assert await m.call("CLIENT", "ID") != first  # a fresh connection
    finally:
        await m.close()


async def test_calls_in_flight_fail_when_the_connection_is_cut_and_the_next_reconnects(
    conn: Multiplexed,
) -> None:
    own = await conn.call("CLIENT", "ID")
    blocked = asyncio.create_task(conn.call("BLPOP", _key(), "5"))
    await asyncio.sleep(0.05)
    other = Multiplexed(URL)
    try:
        assert await other.call("CLIENT", "KILL", "ID", own) == 1
    finally:
        await other.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(blocked, 2)
    assert await conn.call("CLIENT", "ID") != own


async def test_an_idle_connection_the_server_closed_is_replaced_before_writing(
    conn: Multiplexed,
) -> None:
    own = await conn.call("CLIENT", "ID")
    other = Multiplexed(URL)
    try:
        await other.call("CLIENT", "KILL", "ID", own)
    finally:
        await other.close()
    # no pause: the event loop has not seen the end of file yet; the call must not be lost
    assert await conn.call("ECHO", "after") == "after"


async def test_a_refused_connection_fails_at_once() -> None:
    m = Multiplexed("redis://127.0.0.1:1/0")
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1\b"):
        await asyncio.wait_for(m.call("PING"), 2)
    await m.close()


async def test_the_database_of_the_url_is_selected() -> None:
    m = Multiplexed(URL.rsplit("/", 1)[0] + "/5")
    try:
        assert " db=5 " in await m.call("CLIENT", "INFO")
    finally:
        await m.close()


@pytest_asyncio.fixture
async def private_backend(redis_server: Callable[..., RedisServer]) -> AsyncIterator[RedisBackend]:
    """A Redis backend opened on a private server of its own (its CLIENT LIST is the test's)."""
    backend = RedisBackend(redis_server().url)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def test_a_backends_concurrent_adds_use_one_connection_for_their_scripts(
    private_backend: RedisBackend,
) -> None:
    backend = private_backend
    queue = Queue("mux", backend)
    jobs = await asyncio.gather(*(queue.add("x", {"i": i}) for i in range(100)))
    assert len({j.id for j in jobs}) == 100
    assert (await queue.counts())["waiting"] == 100
    clients = await backend.redis.client_list()
    # the pooled client opened one connection per concurrent add
    assert len([c for c in clients if c["cmd"] == "evalsha"]) == 1, clients


@pytest_asyncio.fixture
async def blocking() -> AsyncIterator[tuple[connection.BlockingCalls, Any, str]]:
    """Blocking calls on the test server, a pooled client and a key of its own (removed after)."""
    url = connection.RedisUrl.parse(URL)
    raw = connection.make_client(url, blocking=True)
    calls = connection.BlockingCalls(url, raw)
    key = _key()
    try:
        yield calls, raw, key
    finally:
        await raw.delete(key)
        await calls.close()
        await raw.aclose()


async def test_blocking_calls_reuse_a_connection_and_drop_a_cancelled_ones(
    blocking: tuple[connection.BlockingCalls, Any, str],
) -> None:
    calls, raw, key = blocking
    await raw.zadd(key, {"a": 1, "b": 2})
    assert await calls.call(key, 1.0, "BZPOPMIN", key, "1") == [key, "a", "1"]
    first = await calls.call(key, 1.0, "CLIENT", "ID")
    assert await calls.call(key, 1.0, "BZPOPMIN", key, "1") == [key, "b", "2"]
    assert await calls.call(key, 1.0, "CLIENT", "ID") == first  # kept between calls
    waiting = asyncio.create_task(calls.call(key, 5.0, "BZPOPMIN", key, "5"))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # the cancelled wait's connection is gone, not handed to the next caller
    assert await calls.call(key, 1.0, "CLIENT", "ID") != first
    for _ in range(50):
        if not any(c["id"] == str(first) for c in await raw.client_list()):
            break
        await asyncio.sleep(0.02)
    assert not any(c["id"] == str(first) for c in await raw.client_list())


async def test_concurrent_single_adds_share_script_calls_and_keep_their_order(
    private_backend: RedisBackend,
) -> None:
    backend = private_backend
    queue = Queue("batched", backend)
    await queue.add("warm", {})
    before = await _script_calls(backend)
    jobs = await asyncio.gather(*(queue.add("x", {"i": i}) for i in range(100)))
    calls = await _script_calls(backend) - before - 1  # the INFO read itself
    assert calls < 20, calls  # one script call per add before
    # made in order, so numbered and queued in order, like sequential adds
    ids = [int(j.id) for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 100
    waiting = await backend.list_jobs("batched", "waiting", 0, -1)
    assert [r.data for r in waiting][1:] == [{"i": i} for i in range(100)]
    # adds of one call behave as one after another: the same job id twice, one window twice
    same = await asyncio.gather(
        queue.add("warm", {}),  # one in flight, so the next ones are batched
        queue.add("y", {"n": 1}, job_id="same"),
        queue.add("y", {"n": 2}, job_id="same"),
        queue.add("z", {"n": 1}, deduplication={"id": "w"}),
        queue.add("z", {"n": 2}, deduplication={"id": "w"}),
    )
    assert same[1].id == same[2].id == "same" and same[2].data == {"n": 1}
    assert same[3].id == same[4].id and same[4].data == {"n": 1}
    assert (await queue.counts())["waiting"] == 1 + 100 + 1 + 1 + 1


async def test_many_concurrent_adds_go_in_calls_of_at_most_join_max_in_order(
    private_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adds made in one turn beyond JOIN_MAX lead further calls, sent one after another in
    the order the adds were made (so Redis runs one while the producer reads the other)."""
    backend = private_backend
    queue = Queue("capped", backend)
    sizes: list[int] = []
    real = backend._add

    async def recording(name: str, jobs: Any, *rest: Any, **options: Any) -> Any:
        sizes.append(len(jobs))
        return await real(name, jobs, *rest, **options)

    monkeypatch.setattr(backend, "_add", recording)
    jobs = await asyncio.gather(*(queue.add("x", {"i": i}) for i in range(2 * JOIN_MAX + 10)))
    assert sizes[0] == 1 and max(sizes) <= JOIN_MAX, sizes  # the first went alone
    assert sum(sizes) == 2 * JOIN_MAX + 10 and len(sizes) >= 4, sizes
    ids = [int(j.id) for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    waiting = await backend.list_jobs("capped", "waiting", 0, -1)
    assert [r.data for r in waiting] == [{"i": i} for i in range(2 * JOIN_MAX + 10)]
    assert not backend._adding  # every call's entry was removed, the full ones' too


async def test_a_lone_adds_next_add_joins_the_waiting_call_and_two_calls_are_in_flight(
    private_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 producers start in one turn: the first add goes at once, the next 25 go as one call
    and the last 24 wait (two calls in flight). The lone add comes back first, and its next add
    joins the 24 instead of going alone again (which, every turn, kept Redis and the producer
    taking turns on the two calls of 25 instead of overlapping)."""
    backend = private_backend
    queue = Queue("paired", backend)
    sizes: list[int] = []
    in_flight = [0, 0]  # now, most
    real = backend._add

    async def recording(name: str, jobs: Any, *rest: Any, **options: Any) -> Any:
        sizes.append(len(jobs))
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            return await real(name, jobs, *rest, **options)
        finally:
            in_flight[0] -= 1

    async def producer(p: int) -> list[Job]:
        return [await queue.add("x", {"p": p, "n": n}) for n in range(3)]

    await queue.add("warm", {})  # the script loaded, the connection made
    monkeypatch.setattr(backend, "_add", recording)
    made = await asyncio.gather(*(producer(p) for p in range(2 * JOIN_MAX)))
    assert sizes[:3] == [1, JOIN_MAX, JOIN_MAX], sizes  # was [1, 25, 24], then the 1 alone
    assert in_flight[1] <= ADD_CALLS and sum(sizes) == 6 * JOIN_MAX, (in_flight, sizes)
    waiting = await backend.list_jobs("paired", "waiting", 0, -1)
    assert sorted(int(r.id) for r in waiting[1:]) == sorted(int(j.id) for js in made for j in js)
    for p, jobs in enumerate(made):  # each producer's adds in the order it made them
        assert [j.data for j in jobs] == [{"p": p, "n": n} for n in range(3)]
        assert [int(j.id) for j in jobs] == sorted(int(j.id) for j in jobs)
    assert not backend._adding and not backend._add_queue and not backend._adds_in_flight


async def test_a_cancelled_add_of_a_batch_is_not_sent_and_the_others_are(
    private_backend: RedisBackend,
) -> None:
    backend = private_backend
    queue = Queue("cancelled", backend)
    first = asyncio.create_task(queue.add("first", {}))
    await asyncio.sleep(0)  # in flight now: the next adds of this turn are batched
    leader = asyncio.create_task(queue.add("leader", {}))
    followers = [asyncio.create_task(queue.add("follower", {"i": i})) for i in range(4)]
    await asyncio.sleep(0)  # every add has started; the leader waits for the turn's end
    leader.cancel()
    followers[1].cancel()
    done = await asyncio.gather(first, *followers[:1], *followers[2:])
    for cancelled in (leader, followers[1]):
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    assert [j.data for j in done] == [{}, {"i": 0}, {"i": 2}, {"i": 3}]
    waiting = await backend.list_jobs("cancelled", "waiting", 0, -1)
    assert [r.data for r in waiting] == [{}, {"i": 0}, {"i": 2}, {"i": 3}]


async def test_the_next_adds_of_a_calls_callers_join_the_waiting_call_before_it_goes(
    private_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls of 1, 25 and 25 adds, and 3 adds waiting: the lone add ends (its caller adds no
    more) and the second 25 go; when the first 25 end, their callers' next adds join the 3
    before they go (25, then 3 wait), rather than the 3 going alone and those 25 after them."""
    backend = private_backend
    queue = Queue("refilled", backend)
    await queue.add("warm", {})  # the script loaded, the connection made
    sizes: list[int] = []
    real = backend._add

    async def recording(name: str, jobs: Any, *rest: Any, **options: Any) -> Any:
        sizes.append(len(jobs))
        return await real(name, jobs, *rest, **options)

    big = "x" * 50_000  # the first 25 take Redis a while: the lone add surely ends first

    async def twice(i: int) -> list[Job]:
        return [await queue.add("x", {"i": i, "big": big}), await queue.add("x", {"i": i})]

    monkeypatch.setattr(backend, "_add", recording)
    await asyncio.gather(
        queue.add("lone", {}),
        *(twice(i) for i in range(JOIN_MAX)),
        *(queue.add("y", {"i": i}) for i in range(JOIN_MAX + 3)),
    )
    assert sizes == [1, JOIN_MAX, JOIN_MAX, JOIN_MAX, 3], sizes  # was [1, 25, 25, 3, 25]
    assert (await queue.counts())["waiting"] == 1 + 1 + 3 * JOIN_MAX + 3


async def test_callers_of_a_call_that_ends_with_another_still_join_the_waiting_call(
    private_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, with the replies of the lone add and of the first 25 read in one turn (a
    producer late to read, as on a loaded machine): the 3 waiting adds still wait for the
    first 25 callers' next adds. Before, the lone add's end sent them alone at once."""
    backend = private_backend
    queue = Queue("together", backend)
    await queue.add("warm", {})  # the script loaded, the connection made
    assert backend._lean is not None and backend._lean._protocol is not None
    protocol = backend._lean._protocol
    real = protocol.data_received
    held: list[bytes] = []
    loop = asyncio.get_running_loop()

    def deliver() -> None:
        data = b"".join(held)
        held.clear()
        real(data)

    def late(data: bytes) -> None:  # what comes within 50 ms is read at once
        if not held:
            loop.call_later(0.05, deliver)
        held.append(data)

    monkeypatch.setattr(protocol, "data_received", late)
    sizes: list[int] = []
    add = backend._add

    async def recording(name: str, jobs: Any, *rest: Any, **options: Any) -> Any:
        sizes.append(len(jobs))
        return await add(name, jobs, *rest, **options)

    async def twice(i: int) -> list[Job]:
        return [await queue.add("x", {"i": i}), await queue.add("x", {"i": i, "n": 2})]

    monkeypatch.setattr(backend, "_add", recording)
    await asyncio.gather(
        queue.add("lone", {}),
        *(twice(i) for i in range(JOIN_MAX)),
        *(queue.add("y", {"i": i}) for i in range(JOIN_MAX + 3)),
    )
    assert sizes == [1, JOIN_MAX, JOIN_MAX, JOIN_MAX, 3], sizes  # was [1, 25, 25, 3, 25]
    assert not backend._adding and not backend._add_queue and not backend._adds_in_flight
    assert (await queue.counts())["waiting"] == 1 + 1 + 3 * JOIN_MAX + 3


async def test_cancelled_adds_of_a_waiting_call_are_left_out_and_the_others_go_in_order(
    private_backend: RedisBackend,
) -> None:
    backend = private_backend
    queue = Queue("waited", backend)
    await queue.add("warm", {})  # the script loaded, the connection made
    adds = [asyncio.create_task(queue.add("x", {"i": i})) for i in range(JOIN_MAX + 4)]
    await asyncio.sleep(0)  # every add has started: 1 at once, 25 and 3 in two batches
    await asyncio.sleep(0)  # the leaders' turn ended: two calls in flight, the 3 wait
    assert len(backend._add_queue["waited"]) == 1
    adds[JOIN_MAX + 1].cancel()  # the waiting call's leader
    adds[JOIN_MAX + 2].cancel()
    kept = [a for i, a in enumerate(adds) if i not in (JOIN_MAX + 1, JOIN_MAX + 2)]
    done = await asyncio.gather(*kept)
    for cancelled in (adds[JOIN_MAX + 1], adds[JOIN_MAX + 2]):
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    expected = [{"i": i} for i in range(JOIN_MAX + 4) if i not in (JOIN_MAX + 1, JOIN_MAX + 2)]
    assert [j.data for j in done] == expected
    waiting = await backend.list_jobs("waited", "waiting", 0, -1)
    assert [r.data for r in waiting][1:] == expected
    assert not backend._adding and not backend._add_queue


async def _script_calls(backend: RedisBackend) -> int:
    stats = await backend.redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_closing_the_backend_ends_a_blocked_fetch_at_once() -> None:
    backend = RedisBackend(f"{URL}?prefix=pjt{uuid.uuid4().hex[:8]}")
    await backend.open()
    fetch = asyncio.create_task(backend.fetch("idle", "w", 1, 30.0, 10.0))
    await asyncio.sleep(0.1)  # blocked on the queue's wake-up key now
    started = time.monotonic()
    await backend.close()
    with pytest.raises(BackendError):
        await asyncio.wait_for(fetch, 2)
    assert time.monotonic() - started < 1.5  # not the 10 s block


async def test_closing_while_the_connection_is_being_made_fails_the_call_at_once() -> None:
    """A close that comes while a call's connection is still being made (connect, AUTH,
    SELECT, CLIENT SETNAME): the connection made is not used (a blocking call sent on it
    would wait out its block time after the close, its socket open), the call fails."""
    m = Multiplexed(URL, client_name=NAME)
    for turns in range(1, 8):  # close at each step of the connection's making
        blocked = asyncio.create_task(m.call("BLPOP", _key(), "3"))
        for _ in range(turns):
            await asyncio.sleep(0)
        await m.close()
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(blocked, 2)
        assert time.monotonic() - started < 1.5  # not the 3 s BLPOP
        m = Multiplexed(URL, client_name=NAME)
    await m.close()


async def test_a_password_without_a_user_name_authenticates_as_the_pooled_client_does() -> None:
    """``redis://:PASSWORD@host``: the password is the default user's, as redis-py's pooled
    client sends it (``HELLO 3 AUTH default PASSWORD``). On a server whose default user needs
    no password that is accepted; the one-argument ``AUTH PASSWORD`` was refused there, so the
    backend opened (its pooled client's check passed) and then every script call failed."""
    if "@" in URL.split("//", 1)[1]:
        pytest.skip("the test server's URL has its own credentials")
    server_url = URL.replace("redis://", "redis://:any-password@", 1)
    m = Multiplexed(server_url, client_name=NAME)
    try:
        assert await m.call("PING") == "PONG"
    finally:
        await m.close()
    backend = RedisBackend(f"{server_url}?prefix=pjt{uuid.uuid4().hex[:8]}")
    await backend.open()
    try:
        added = await Queue("auth", backend).add("job", {"n": 1})
        assert (await Queue("auth", backend).counts())["waiting"] == 1, added
    finally:
        await backend.close()


async def _blocked_wait(backend: RedisBackend) -> str:
    """The id of the connection a fetch of ``backend`` is blocked on (``BZPOPMIN``)."""
    for _ in range(100):
        for client in await backend.redis.client_list():
            if client["cmd"] == "bzpopmin" and "b" in client["flags"]:
                return str(client["id"])
        await asyncio.sleep(0.01)
    raise AssertionError("no fetch blocked")


async def test_a_woken_fetch_takes_its_job_on_the_waits_connection_by_the_server_clock(
    private_backend: RedisBackend,
) -> None:
    backend = private_backend
    queue = Queue("pick", backend)
    fetch = asyncio.create_task(backend.fetch("pick", "w", 1, 30.0, 5.0))
    waiting_on = await _blocked_wait(backend)
    before = time.time()
    added = await queue.add("x", {})
    jobs = await asyncio.wait_for(fetch, 2)
    assert [j.id for j in jobs] == [added.id]
    # the fetch ran on the wait's own connection, right after the wake-up (one round
    # trip), and stamped the job with the server's clock, not a time taken before the wait
    clients = {c["id"]: c for c in await backend.redis.client_list()}
    assert clients[waiting_on]["cmd"] == "evalsha", clients[waiting_on]
    assert jobs[0].processed_on is not None
    assert before - 0.05 <= jobs[0].processed_on <= time.time() + 0.05
    # its lease runs from then too: renewing it works, the job is this worker's
    assert await backend.extend("pick", "w", [added.id], 30.0) == []


async def test_a_cancelled_blocked_fetch_takes_nothing_added_afterwards(
    private_backend: RedisBackend,
) -> None:
    backend = private_backend
    queue = Queue("pick", backend)
    fetch = asyncio.create_task(backend.fetch("pick", "w", 1, 30.0, 5.0))
    await _blocked_wait(backend)
    fetch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetch
    await queue.add("x", {})
    await asyncio.sleep(0.1)
    counts = await queue.counts()
    assert (counts["waiting"], counts["active"]) == (1, 0), counts


async def test_a_blocking_call_past_its_deadline_fails_and_drops_its_connection(
    monkeypatch: pytest.MonkeyPatch, blocking: tuple[connection.BlockingCalls, Any, str]
) -> None:
    calls, raw, key = blocking
    monkeypatch.setattr(connection, "BLOCK_MARGIN", 0.05)
    first = await calls.call(key, 1.0, "CLIENT", "ID")
    started = time.monotonic()
    with pytest.raises((TimeoutError, builtins.TimeoutError)):  # (Redis would wait 5 s)
        await calls.call(key, 0.05, "BZPOPMIN", key, "5")
    assert time.monotonic() - started < 2.0
    assert await calls.call(key, 1.0, "CLIENT", "ID") != first  # a new connection
    with pytest.raises((TimeoutError, builtins.TimeoutError)):  # the same for a pipeline
        await calls.call_many(0.05, ("BZPOPMIN", key, "5"), ("PING",))
    assert await raw.zadd(key, {"a": 1}) == 1
    assert await calls.call(key, 1.0, "BZPOPMIN", key, "1") == [key, "a", "1"]


async def test_every_script_call_after_a_script_flush_loads_it_again(
    private_backend: RedisBackend,
) -> None:
    backend = private_backend
    queue = Queue("flushed", backend)
    await queue.add("x", {})
    assert (await backend.counts("flushed"))["waiting"] == 1  # the read script is loaded
    await backend.redis.script_flush()
    assert (await backend.counts("flushed"))["waiting"] == 1  # a read after the flush
    [job] = await backend.fetch("flushed", "w", 1, 30.0, 0.0)
    await backend.redis.script_flush()
    done = await backend.finish(
        "flushed", "w", [Finish(job.id, "completed", 1, time.time())], 0, 30.0
    )
    assert done.lost == [] and (await backend.counts("flushed"))["completed"] == 1


async def test_a_deadline_due_in_the_turn_its_reply_came_does_not_pool_a_closed_connection(
    monkeypatch: pytest.MonkeyPatch, blocking: tuple[connection.BlockingCalls, Any, str]
) -> None:
    """The reply and the call's deadline timer both ready in one loop turn: the call has its
    reply, and the connection the timer closed is not handed to the next call."""
    calls, _raw, key = blocking
    monkeypatch.setattr(connection, "BLOCK_MARGIN", 0.0)
    await calls.call(key, 1.0, "PING")  # a connection made and idle
    call = asyncio.ensure_future(calls.call(key, 0.05, "PING"))
    await asyncio.sleep(0)  # sent
    time.sleep(0.2)  # the loop held: the reply readable and the deadline due together
    try:
        assert await call == "PONG"
    except (TimeoutError, builtins.TimeoutError):
        pass  # the timer ran first: a timeout is right too
    assert await calls.call(key, 1.0, "PING") == "PONG"  # not on a closed connection
