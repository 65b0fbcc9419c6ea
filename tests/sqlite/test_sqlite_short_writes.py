"""Short writes (one add, a worker's finish of a few jobs) run on the event loop's thread while
the file is free, and on the database thread otherwise, without ever stalling the loop."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from polyjobs import Queue, open_backend
from polyjobs.backend import Finish
from polyjobs.backends.sqlite import database
from polyjobs.backends.sqlite.database import BUSY_TIMEOUT_MS, SHORT_BUDGET, Database
from polyjobs.errors import BackendError


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(tmp_path / "jobs.db")
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def _here(conn: sqlite3.Connection, seen: list[int]) -> int:
    """A transaction body that records the thread it ran on."""
    seen.append(threading.get_ident())
    return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


@contextmanager
def _write_lock_held(path: Path) -> Iterator[threading.Event]:
    """Another connection holds the file's write lock until the yielded event is set."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(20)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        yield release
    finally:
        release.set()
        holder.join(10)


async def _ticks_while(task: asyncio.Task[object], seconds: float) -> float:
    """Let ``task`` wait for ``seconds`` while a ticker runs; the longest gap between ticks."""
    longest, last = 0.0, time.monotonic()
    end = last + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.01)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    assert not task.done()  # still waiting for the lock
    return longest


async def test_a_short_write_on_a_free_file_runs_on_the_loop_thread(db: Database) -> None:
    seen: list[int] = []
    assert await db.write_short(_here, seen) == 0
    assert seen == [threading.get_ident()]
    await db.write(_here, seen)  # a plain write still goes to the database thread
    assert seen[1] != threading.get_ident()


async def test_a_locked_file_sends_the_short_write_to_the_thread_and_the_loop_runs_on(
    db: Database,
) -> None:
    seen: list[int] = []
    with _write_lock_held(db.path) as release:
        write = asyncio.create_task(db.write_short(_here, seen))
        # SQLite's busy handler would hold the loop for BUSY_TIMEOUT_MS if it waited here
        longest = await _ticks_while(write, 1.0)
        assert longest < BUSY_TIMEOUT_MS / 1000 / 10
        release.set()
        assert await asyncio.wait_for(write, 10) == 0
    assert seen and threading.get_ident() not in seen  # it ran on the database thread only
    # the thread is idle again: the next short write is back on the loop
    await db.write_short(_here, seen)
    assert seen[-1] == threading.get_ident()


async def test_a_write_dropped_before_it_ran_leaves_short_writes_on_the_loop(
    db: Database,
) -> None:
    seen: list[int] = []
    with _write_lock_held(db.path) as release:
        first = asyncio.create_task(db.write_short(_here, seen))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(db.write_short(_here, seen))  # queued behind the first
        await asyncio.sleep(0.05)
        second.cancel()
        release.set()
        await asyncio.wait_for(first, 10)
        with pytest.raises(asyncio.CancelledError):
            await second
    ran = len(seen)
    # the database thread throws the dropped call away when it comes to it (it may not have
    # yet); from then on short writes run on the loop again, never staying on the thread
    for _ in range(200):
        await db.write_short(_here, seen)
        if seen[-1] == threading.get_ident():
            break
        await asyncio.sleep(0.01)
    assert ran == 1 and seen[-1] == threading.get_ident()


async def test_full_synchronous_commits_never_run_on_the_loop(tmp_path: Path) -> None:
    db = Database(tmp_path / "jobs.db", synchronous="FULL")  # every commit syncs the file
    await db.open()
    try:
        seen: list[int] = []
        await db.write_short(_here, seen)
        assert seen and threading.get_ident() not in seen
    finally:
        await db.close()


async def test_the_wal_is_checkpointed_off_the_loop_during_a_run_of_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SHORT_ROUND", 10)
    monkeypatch.setattr(database, "WAL_AUTOCHECKPOINT", 20)
    path = tmp_path / "jobs.db"
    async with open_backend(f"sqlite:///{path}") as backend:
        queue = Queue("q", backend)
        for n in range(600):  # about 4 WAL pages each: 2,400 pages (10 MB) if never checkpointed
            await queue.add("x", {"n": n})
        wal = Path(f"{path}-wal").stat().st_size
        assert wal < 1024 * 1024, wal
        assert (await backend.counts("q"))["waiting"] == 600


async def test_a_locked_file_during_add_and_finish_keeps_the_loop_running(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with open_backend(f"sqlite:///{path}") as backend:
        queue = Queue("q", backend)
        await queue.add("x", job_id="first")
        await queue.add("x", job_id="second")
        [job] = await backend.fetch("q", "w", 1, 30.0, 0)
        with _write_lock_held(path) as release:
            add = asyncio.create_task(queue.add("x", job_id="late"))
            finish = asyncio.create_task(
                backend.finish(
                    "q", "w", [Finish(job.id, "completed", 1, time.time(), "1")], 1, 30.0
                )
            )
            longest = await _ticks_while(asyncio.ensure_future(asyncio.gather(add, finish)), 1.0)
            assert longest < BUSY_TIMEOUT_MS / 1000 / 10
            release.set()
            added = await asyncio.wait_for(add, 10)
            finished = await asyncio.wait_for(finish, 10)
        assert added.id == "late"
        assert finished.lost == [] and [j.id for j in finished.jobs] == ["second"]
        assert (await backend.counts("q"))["completed"] == 1


async def test_concurrent_single_and_bulk_adds_all_land_once(tmp_path: Path) -> None:
    async with open_backend(f"sqlite:///{tmp_path / 'jobs.db'}") as backend:
        queue = Queue("q", backend)
        bulk = asyncio.create_task(queue.add_bulk([("x", {"n": n}) for n in range(2000)]))
        singles = await asyncio.gather(*(queue.add("x", {"n": n}) for n in range(2000, 2100)))
        ids = [job.id for job in await bulk] + [job.id for job in singles]
        assert len(set(ids)) == 2100
        assert (await backend.counts("q"))["waiting"] == 2100


def _count_to(conn: sqlite3.Connection, n: int, seen: list[int]) -> int:
    """A transaction body far longer than a short write may hold the loop."""
    seen.append(threading.get_ident())
    return int(
        conn.execute(
            "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < ?) "
            "SELECT count(*) FROM r",
            (n,),
        ).fetchone()[0]
    )


async def test_a_short_write_that_runs_long_is_interrupted_and_finished_on_the_thread(
    db: Database,
) -> None:
    seen: list[int] = []
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    start = time.monotonic()
    assert await db.write_short(_count_to, 1_000_000, seen) == 1_000_000
    took = time.monotonic() - start
    ticker.cancel()
    # started on the loop, given up there after SHORT_BUDGET, then run whole on the thread
    assert seen[0] == threading.get_ident() and seen[-1] != threading.get_ident()
    longest = max(b - a for a, b in itertools.pairwise(ticks))
    # the call ran many times the budget, and the loop was never held for most of it (a fast
    # machine counts to a million in under 0.2 s: the bound is the budget's, not the machine's)
    assert took > 10 * SHORT_BUDGET and longest < took / 2, (took, longest)


async def test_a_short_read_runs_on_the_loop_even_while_another_connection_writes(
    db: Database,
) -> None:
    seen: list[int] = []
    with _write_lock_held(db.path):  # WAL: readers never wait for the writer
        assert await db.read_short(_here, seen) == 0
    assert seen == [threading.get_ident()]


def _insert_then_dawdle(conn: sqlite3.Connection, fail: bool, seen: list[int]) -> None:
    """Insert a row, then spend the rest of the loop's budget in Python (no SQLite step
    runs meanwhile), so that only the COMMIT or ROLLBACK that follows finds it spent."""
    seen.append(threading.get_ident())
    conn.execute("INSERT INTO review_rows (x) VALUES (1)")
    time.sleep(database.SHORT_BUDGET * 2)
    if fail:
        raise ValueError("the transaction body failed")


def _rows(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM review_rows").fetchone()[0])


@asynccontextmanager
async def _db_stepping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: int
) -> AsyncIterator[Database]:
    """A database whose loop calls meet the progress handler every ``steps`` SQLite steps,
    with a table of rows of its own."""
    monkeypatch.setattr(database, "PROGRESS_STEPS", steps)
    db = Database(tmp_path / "jobs.db")
    await db.open()
    try:
        await db.write(lambda conn: conn.execute("CREATE TABLE review_rows (x)"))
        yield db
    finally:
        await db.close()


async def test_a_commit_past_the_budget_is_not_undone_and_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite may call the progress handler once more after a COMMIT has committed (when the
    # statement's steps reach the next multiple); with 3 steps that is every COMMIT. An
    # 'interrupted' there must not send the transaction to the thread to run a second time.
    async with _db_stepping(tmp_path, monkeypatch, 3) as db:
        seen: list[int] = []
        await db.write_short(_insert_then_dawdle, False, seen)
        assert await db.read(_rows) == 1
        assert seen == [threading.get_ident()]


async def test_a_rollback_past_the_budget_is_not_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with 2 steps the progress handler runs before ROLLBACK has rolled back: interrupted
    # there, the transaction stayed open and every later call failed ('cannot start a
    # transaction within a transaction'), the file's write lock held
    async with _db_stepping(tmp_path, monkeypatch, 2) as db:
        with pytest.raises(ValueError, match="body failed"):
            await db.write_short(_insert_then_dawdle, True, [])
        assert await db.read(_rows) == 0
        await db.write(lambda conn: conn.execute("INSERT INTO review_rows (x) VALUES (2)"))
        assert await db.read(_rows) == 1


def _null_into_not_null(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO jobs (queue) VALUES (NULL)")


async def test_a_refused_write_is_not_called_damage(db: Database) -> None:
    # an IntegrityError is a write the schema refused: telling the user to move a healthy
    # file aside would lose their jobs
    for write in (db.write, db.write_short):
        with pytest.raises(BackendError) as caught:
            await write(_null_into_not_null)
        assert "NOT NULL constraint failed" in str(caught.value)
        assert "damaged" not in str(caught.value) and "move it aside" not in str(caught.value)
