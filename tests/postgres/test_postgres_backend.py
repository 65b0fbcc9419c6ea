"""The PostgreSQL backend beyond the contract suite: URLs, the missing driver, schema versions
and migrations (at first use and ``polyjobs migrate``), wake-ups across connections."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from polyjobs import Queue, open_backend
from polyjobs.backend import NewJob
from polyjobs.backends.postgres import make_backend, records, schema
from polyjobs.backends.postgres.backend import PostgresBackend
from polyjobs.backends.postgres.url import PostgresUrl
from polyjobs.errors import BackendUnavailableError, ConfigError, InvalidArgumentError

POLYJOBS = str(Path(sys.executable).with_name("polyjobs"))


def test_url_options_and_tls_parameters_pass_through() -> None:
    url = PostgresUrl.parse(
        "postgres://app:s3cret@db:6432/jobs?schema=billing&pool=3&migrate=false"
        "&sslmode=verify-full&sslrootcert=/etc/ca.pem"
    )
    assert (url.schema, url.pool, url.migrate) == ("billing", 3, False)
    assert url.dsn == (
        "postgresql://app:s3cret@db:6432/jobs?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem"
    )
    assert "s3cret" not in url.redacted and url.channel == "polyjobs_billing"
    assert PostgresUrl.parse("postgresql://h/db").schema == "polyjobs"


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("schema=no-dashes", "invalid schema name"),
        ("schema=1abc", "invalid schema name"),
        ("schema=" + "x" * 64, "invalid schema name"),
        ("pool=0", "pool must be"),
        ("pool=many", "pool must be"),
        ("migrate=maybe", "migrate must be"),
    ],
)
def test_bad_url_options_are_one_line_errors(query: str, complaint: str) -> None:
    with pytest.raises(InvalidArgumentError, match=complaint) as caught:
        PostgresUrl.parse(f"postgresql://u:pw@h/db?{query}")
    assert "\n" not in str(caught.value) and ":pw@" not in str(caught.value)


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'polyjobs\[postgres\]'"):
        make_backend("postgresql://u@h/db")


def test_a_missing_driver_is_one_line_from_the_cli(tmp_path: Path) -> None:
    blocker = tmp_path / "asyncpg.py"
    blocker.write_text("raise ImportError('asyncpg is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [POLYJOBS, "stats", "--backend", "postgresql://u@127.0.0.1:1/db"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "polyjobs[postgres]" in done.stderr
    assert "Traceback" not in done.stderr


async def test_unreachable_server_is_one_line_without_the_password() -> None:
    with pytest.raises(BackendUnavailableError) as caught:
        async with open_backend("postgresql://u:hunter2@127.0.0.1:1/db"):
            pass
    assert "cannot reach PostgreSQL" in str(caught.value) and "hunter2" not in str(caught.value)


async def _version_rows(url: str) -> list[int]:
    parsed = PostgresUrl.parse(url)
    conn = await asyncpg.connect(parsed.dsn)
    try:
        rows = await conn.fetch(f'SELECT version FROM "{parsed.schema}".schema_version')
        return sorted(r["version"] for r in rows)
    finally:
        await conn.close()


async def test_first_use_migrates_once_when_processes_open_together(pg_url: str) -> None:
    backends = [PostgresBackend(pg_url) for _ in range(4)]
    await asyncio.gather(*(b.open() for b in backends))
    try:
        assert await _version_rows(pg_url) == list(range(1, schema.SCHEMA_VERSION + 1))
        job = await Queue("q", backends[0]).add("x", {"a": 1})
        assert (await backends[3].get_job("q", job.id)) is not None
    finally:
        await asyncio.gather(*(b.close() for b in backends))


async def test_migrate_false_refuses_an_old_schema_until_polyjobs_migrate(pg_url: str) -> None:
    strict = pg_url + "&migrate=false"
    with pytest.raises(BackendUnavailableError, match="run `polyjobs migrate`") as caught:
        async with open_backend(strict):
            pass
    assert "version 0" in str(caught.value)
    first = await asyncio.to_thread(
        subprocess.run,
        [POLYJOBS, "migrate", "--backend", strict],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0, first.stderr
    assert f"migrated from version 0 to {schema.SCHEMA_VERSION}" in first.stdout
    again = await asyncio.to_thread(
        subprocess.run,
        [POLYJOBS, "migrate", "--backend", strict],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "nothing to do" in again.stdout
    async with open_backend(strict) as backend:
        assert await backend.counts("q") == dict.fromkeys(
            ("waiting", "active", "delayed", "waiting-children", "completed", "failed"), 0
        )


async def test_a_newer_schema_is_refused_and_left_alone(pg_url: str) -> None:
    async with open_backend(pg_url) as backend:
        await Queue("q", backend).add("x", 1, job_id="kept")
    parsed = PostgresUrl.parse(pg_url)
    conn = await asyncpg.connect(parsed.dsn)
    try:
        await conn.execute(
            f'INSERT INTO "{parsed.schema}".schema_version VALUES ($1, 0)',
            schema.SCHEMA_VERSION + 5,
        )
    finally:
        await conn.close()
    with pytest.raises(BackendUnavailableError, match="written by a newer polyjobs"):
        async with open_backend(pg_url):
            pass
    with pytest.raises(BackendUnavailableError, match="newer polyjobs"):
        await PostgresBackend(pg_url).migrate()
    assert schema.SCHEMA_VERSION + 5 in await _version_rows(pg_url)


async def test_a_schema_of_another_application_is_refused(pg_url: str) -> None:
    parsed = PostgresUrl.parse(pg_url)
    conn = await asyncpg.connect(parsed.dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{parsed.schema}"')
        await conn.execute(f'CREATE TABLE "{parsed.schema}".customers (id int)')
    finally:
        await conn.close()
    with pytest.raises(BackendUnavailableError, match=r"not polyjobs' \(customers\)"):
        async with open_backend(pg_url):
            pass


async def test_two_schemas_in_one_database_are_separate_deployments(
    pg_url: str, postgres_server: str
) -> None:
    from polyjobs.backends.postgres.testing import fresh_schema

    with fresh_schema(postgres_server) as other_url:
        async with open_backend(pg_url) as one, open_backend(other_url) as two:
            await Queue("same", one).add("x", 1, job_id="a")
            assert await two.get_job("same", "a") is None
            assert await two.queues() == [] and await one.queues() == ["same"]


async def test_an_idle_fetch_wakes_on_an_add_from_another_connection(pg_url: str) -> None:
    async with open_backend(pg_url) as worker_side, open_backend(pg_url) as producer:
        started = time.monotonic()
        fetch = asyncio.create_task(worker_side.fetch("q", "tok", 1, 30.0, 30.0))
        await asyncio.sleep(0.3)  # let the fetch find nothing and wait
        assert not fetch.done()
        await producer.add("q", [NewJob("x", "1", {}, time.time())])
        jobs = await asyncio.wait_for(fetch, 10)
        assert [j.data for j in jobs] == [1] and time.monotonic() - started < 15


async def test_a_fetch_cancelled_in_the_turn_it_is_woken_is_cancelled(pg_url: str) -> None:
    """The wake-up's wait ends in the same turn as the cancellation: the fetch ends cancelled
    (with ``asyncio.wait_for`` on Python 3.11 the cancellation was lost and it looked again)."""
    async with open_backend(pg_url) as backend:
        assert isinstance(backend, PostgresBackend)
        fetch = asyncio.create_task(backend.fetch("q", "tok", 1, 30.0, 30.0))
        await asyncio.sleep(0.3)  # let the fetch find nothing and wait
        waker = backend._waker
        assert waker is not None
        (event,) = waker._waiters["q"]
        event.set()
        fetch.cancel()
        await asyncio.wait([fetch], timeout=3)
        assert fetch.cancelled()


async def test_a_waiting_fetch_looks_again_when_a_delayed_job_falls_due(pg_url: str) -> None:
    async with open_backend(pg_url) as backend:
        now = time.time()
        fetch = asyncio.create_task(backend.fetch("q", "tok", 1, 30.0, 30.0))
        await asyncio.sleep(0.2)
        await backend.add("q", [NewJob("later", "2", {}, now, run_at=now + 1.0)])
        jobs = await asyncio.wait_for(fetch, 10)
        assert [j.name for j in jobs] == ["later"] and time.time() >= now + 1.0


async def test_an_older_schema_is_migrated_forward_with_its_jobs(pg_url: str) -> None:
    parsed = PostgresUrl.parse(pg_url)
    conn = await asyncpg.connect(parsed.dsn, server_settings={"search_path": parsed.schema})
    try:
        assert await schema.migrate(conn, parsed.schema, "test", target=1) == (0, 1)
        rows = await conn.fetch(
            "SELECT * FROM pj_add($1, $2, 'ch', $3, $4, $5, $6, $7, $8, $9, $10)",
            "q",
            time.time(),
            ["old", None],
            ["x", "y"],
            ["1", "2"],
            ["{}", "{}"],
            [time.time()] * 2,
            [0.0, 0.0],
            [0, 0],
            [False, False],
        )
        assert [r["added"] for r in rows] == [True, True]
    finally:
        await conn.close()
    async with open_backend(pg_url) as backend:
        assert await _version_rows(pg_url) == list(range(1, schema.SCHEMA_VERSION + 1))
        old = await backend.get_job("q", "old")
        assert old is not None and old.data == 1
        results = await backend.add("q", [NewJob("z", "3", {}, time.time(), job_id="old")])
        assert [(r.id, r.added) for r in results] == [("old", False)]
        assert (await backend.counts("q"))["waiting"] == 2


def test_migrate_on_a_backend_without_a_schema_says_so() -> None:
    done = subprocess.run(
        [POLYJOBS, "migrate", "--backend", "memory://"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "has no schema to migrate" in done.stdout


async def test_a_bulk_add_sends_shared_options_once_and_keeps_each_jobs_own(
    pg_url: str,
) -> None:
    async with open_backend(pg_url) as backend:
        queue = Queue("bulk", backend, default_options={"attempts": 2})
        jobs = await queue.add_bulk(
            [
                ("a", 1),
                ("b", 2, {"priority": 5}),
                ("c", 3),
                ("d", 4, {"job_id": "named", "attempts": 7}),
                ("e", 5),
            ]
        )
        assert [j.id for j in jobs][3] == "named"
        stored = [await backend.get_job("bulk", j.id) for j in jobs]
        assert [(r.name, r.opts["attempts"], r.priority) for r in stored if r] == [
            ("a", 2, 0),
            ("b", 2, 5),
            ("c", 2, 0),
            ("d", 7, 0),
            ("e", 2, 0),
        ]
        fetched = await backend.fetch("bulk", "tok", 5, 30.0, 0)
        assert [r.name for r in fetched] == ["a", "c", "d", "e", "b"]
        # a batch of automatic ids only, larger than one options text
        more = await queue.add_bulk([("m", i, {"priority": i % 2}) for i in range(6)])
        assert len({j.id for j in more}) == 6
        fetched = await backend.fetch("bulk", "tok", 6, 30.0, 0)
        assert [r.data for r in fetched] == [0, 2, 4, 1, 3, 5]


async def test_what_every_job_of_a_batch_shares_is_sent_once_and_given_to_each(
    pg_url: str,
) -> None:
    now = time.time()
    three: dict[str, Any] = {"attempts": 3}
    same = [
        NewJob("s", str(i), three, now, run_at=now + 60, priority=4, lifo=True) for i in range(3)
    ]
    args = records.add_args(same)
    assert args[1] == ["s"] and len(args[2]) == 3
    assert args[4:] == [[1], [now], [now + 60], [4], [True]]
    plain: dict[str, Any] = {}
    mixed = [
        NewJob("m0", "5", plain, now),
        NewJob("m1", "0", plain, now, priority=2),
        NewJob("m2", "1", plain, now, lifo=True),
        NewJob("m1", "2", plain, now, run_at=now + 60),
        NewJob("m3", "3", {"attempts": 2}, now + 1, priority=1),
    ]
    assert [len(a) for a in records.add_args(mixed)[1:]] == [5, 5, 2, 5, 5, 5, 5, 5]
    async with open_backend(pg_url) as backend:
        ids = [r.id for r in await backend.add("q", [*same, *mixed])]
        stored = [await backend.get_job("q", job_id) for job_id in ids]
        assert [
            (r.name, r.data, r.opts, r.state, r.timestamp, r.run_at, r.priority)
            for r in stored
            if r
        ] == [
            *[("s", i, three, "delayed", now, now + 60, 4) for i in range(3)],
            ("m0", 5, {}, "waiting", now, 0.0, 0),
            ("m1", 0, {}, "waiting", now, 0.0, 2),
            ("m2", 1, {}, "waiting", now, 0.0, 0),
            ("m1", 2, {}, "delayed", now, now + 60, 0),
            ("m3", 3, {"attempts": 2}, "waiting", now + 1, 0.0, 1),
        ]
        fetched = await backend.fetch("q", "tok", 10, 30.0, 0)
        assert [r.data for r in fetched] == [1, 5, 3, 0]  # by priority; lifo first in its level


async def test_a_fetch_commits_without_waiting_for_the_flush_and_a_finish_waits(
    pg_url: str,
) -> None:
    async with open_backend(pg_url) as backend:
        await backend.add("q", [NewJob("x", "1", {}, time.time())])
    parsed = PostgresUrl.parse(pg_url)
    conn = await asyncpg.connect(parsed.dsn, server_settings={"search_path": parsed.schema})
    try:
        now = time.time()
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT * FROM pj_fetch('q', 'tok', 1, $1, $2, false)", now, now + 30
            )
            assert [r["name"] for r in rows] == ["x"]
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await conn.fetchval("SHOW synchronous_commit") == "on"  # its transaction only
        async with conn.transaction():
            await conn.fetch(
                "SELECT * FROM pj_finish('q', 'tok', $1, $2, 1, 'ch', $3, '{completed}', '{1}',"
                " $4, '{null}', '{NULL}', '{NULL}', '{0}', '{NULL}', '{NULL}')",
                now,
                now + 30,
                [rows[0]["id"]],
                [now],
            )
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await conn.close()
    async with open_backend(pg_url) as backend:
        done = await backend.get_job("q", rows[0]["id"])
        assert done is not None and done.state == "completed"


async def test_automatic_ids_the_sequence_reaches_taken_by_hand_are_skipped(
    pg_url: str,
) -> None:
    async with open_backend(pg_url) as backend:
        queue = Queue("ids", backend)
        first = await queue.add_bulk([("a", 0), ("a", 1)])
        last = max(int(j.id) for j in first)
        # jobs named with the ids the sequence gives next
        taken = [str(last + 1), str(last + 3)]
        for job_id in taken:
            await queue.add("named", job_id, job_id=job_id)
        added = await queue.add_bulk([("b", i) for i in range(4)])
        assert [j.data for j in added] == [0, 1, 2, 3]
        assert len({j.id for j in added}) == 4 and not {j.id for j in added} & set(taken)
        stored = [await backend.get_job("ids", j.id) for j in added]
        assert [(r.name, r.data) for r in stored if r] == [("b", i) for i in range(4)]
        for job_id in taken:
            kept = await backend.get_job("ids", job_id)
            assert kept is not None and (kept.name, kept.data) == ("named", job_id)
        fetched = await backend.fetch("ids", "tok", 10, 30.0, 0)
        assert [r.name for r in fetched] == ["a", "a", "named", "named", "b", "b", "b", "b"]


async def test_a_single_add_whose_automatic_id_was_taken_by_hand_gets_the_next(
    pg_url: str,
) -> None:
    async with open_backend(pg_url) as backend:
        queue = Queue("one", backend)
        first = await queue.add("a", 0)
        await queue.add("named", "mine", job_id=str(int(first.id) + 1))
        second = await queue.add("b", 1, delay=60)
        third = await queue.add("c", 2, lifo=True)
        assert second.id not in {first.id, str(int(first.id) + 1)}
        stored = await backend.get_job("one", second.id)
        assert stored is not None and (stored.name, stored.data, stored.state) == (
            "b",
            1,
            "delayed",
        )
        named = await backend.get_job("one", str(int(first.id) + 1))
        assert named is not None and named.data == "mine"
        again = await queue.add("x", 3, job_id=str(int(first.id) + 1))  # exists: not added
        assert again.id == str(int(first.id) + 1) and again.data == "mine"
        fetched = await backend.fetch("one", "tok", 5, 30.0, 0)
        assert [r.id for r in fetched] == [third.id, first.id, str(int(first.id) + 1)]
