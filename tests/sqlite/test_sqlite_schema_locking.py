"""The SQLite schema's versioning, and behaviour while another connection holds the write lock."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from pathlib import Path

from polyjobs import Queue, open_backend
from polyjobs.backend import controller, rate_limiter
from polyjobs.backends.sqlite.control import KEEP
from polyjobs.backends.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from polyjobs.options import RateLimit


def test_migrations_are_contiguous() -> None:
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def _pragmas(path: Path) -> tuple[int, int, set[str]]:
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    return version, app_id, tables


async def test_new_file_gets_the_schema_and_reopening_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with open_backend(f"sqlite:///{path}") as backend:
        await Queue("q", backend).add("x", job_id="a")
    first = _pragmas(path)
    assert first[:2] == (SCHEMA_VERSION, APPLICATION_ID)
    async with open_backend(f"sqlite:///{path}") as backend:
        job = await backend.get_job("q", "a")
        assert job is not None and job.state == "waiting"
    assert _pragmas(path) == first


async def test_a_version_1_file_is_migrated_forward_with_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("INSERT INTO queue_meta (queue, next_id, seq) VALUES ('q', 1, 1)")
    conn.execute(
        "INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, timestamp) "
        "VALUES ('q', '1', 'old', '{\"a\": 1}', '{}', 'waiting', 0, 1, 1.0)"
    )
    conn.close()
    async with open_backend(f"sqlite:///{path}") as backend:
        job = await backend.get_job("q", "1")
        assert job is not None and job.data == {"a": 1} and job.state == "waiting"
        new = await Queue("q", backend).add("new")
        assert new.id == "2"
        fetched = await backend.fetch("q", "w", 5, 30.0, 0)
        assert [j.id for j in fetched] == ["1", "2"]
    assert _pragmas(path)[0] == SCHEMA_VERSION


async def test_a_version_2_file_gains_the_control_table_and_keeps_its_jobs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for version in (1, 2):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(
        "INSERT INTO queue_meta (queue, next_id, seq, rate_max, rate_duration) "
        "VALUES ('q', 1, 1, 5, 2.0)"
    )
    conn.execute(
        "INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, timestamp) "
        "VALUES ('q', '1', 'old', '{\"a\": 1}', '{}', 'waiting', 0, 1, 1.0)"
    )
    conn.close()
    assert "control" not in _pragmas(path)[2]
    async with open_backend(f"sqlite:///{path}") as backend:
        job = await backend.get_job("q", "1")
        assert job is not None and job.data == {"a": 1} and job.state == "waiting"
        assert await controller(backend).control_messages(0.0) == []
        sent = await controller(backend).send_control("stop", "{}")
        assert await controller(backend).control_messages(0.0) == [sent]
        assert await rate_limiter(backend).get_rate_limit("q") == RateLimit(5, 2.0)
        fetched = await backend.fetch("q", "w", 5, 30.0, 0)
        assert [j.id for j in fetched] == ["1"]
    version, _, tables = _pragmas(path)
    assert version == SCHEMA_VERSION and "control" in tables


async def test_control_keeps_the_newest_messages_in_strictly_increasing_time(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with open_backend(url) as one, open_backend(url) as other:
        sent = []
        for n in range(KEEP + 20):  # two connections taking turns
            sender = one if n % 2 else other
            sent.append(await controller(sender).send_control("ping", str(n)))
        assert all(b.at > a.at for a, b in itertools.pairwise(sent))
        kept = await controller(one).control_messages(0.0)
        assert kept == sent[-KEEP:]


async def test_a_held_write_lock_is_waited_for_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with open_backend(f"sqlite:///{path}") as backend:
        locked, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(10)
            conn.execute("ROLLBACK")
            conn.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        try:
            assert await asyncio.to_thread(locked.wait, 10)
            add = asyncio.create_task(Queue("q", backend).add("x", job_id="late"))
            ticks = 0
            for _ in range(30):  # the loop keeps running while the add waits for the lock
                await asyncio.sleep(0.01)
                ticks += 1
            assert not add.done()
            release.set()
            job = await asyncio.wait_for(add, 10)
            assert job.id == "late" and ticks == 30
        finally:
            release.set()
            holder.join(10)
        assert (await backend.counts("q"))["waiting"] == 1
