"""Blocking fetch on SQLite: what wakes it, inside one process and from another one.

The bounds below are loose (seconds against a 10 s block): they prove that a wake-up happened,
not how fast; ``benchmarks/sqlite_quick.py`` measures the latency.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polyjobs import Queue
from polyjobs.backends.sqlite import SqliteBackend, watch
from polyjobs.backends.sqlite import backend as sqlite_backend
from polyjobs.backends.sqlite.wakeup import FileSignal

Q = "wake"
BLOCK = 10.0


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    yield f"sqlite:///{tmp_path}/wake.db"
    assert str((tmp_path / "wake.db").resolve()) not in FileSignal._files  # all closed


async def _opened(url: str) -> SqliteBackend:
    backend = SqliteBackend(url)
    await backend.open()
    return backend


async def _timed_fetch(backend: SqliteBackend) -> tuple[list[str], float]:
    start = time.monotonic()
    jobs = await backend.fetch(Q, "w", 1, 30.0, BLOCK)
    return [j.id for j in jobs], time.monotonic() - start


ADD_ELSEWHERE = (
    "import asyncio, sys\n"
    "from polyjobs import Queue, open_backend\n"
    "async def main():\n"
    "    async with open_backend(sys.argv[1]) as b:\n"
    "        await Queue('wake', b).add('x', job_id=sys.argv[2])\n"
    "asyncio.run(main())\n"
)


async def _fetch_added_elsewhere(
    backend: SqliteBackend, url: str, job_id: str
) -> tuple[list[str], float]:
    """:func:`_timed_fetch`, with job ``job_id`` added from another process once it waits."""
    fetch = asyncio.create_task(_timed_fetch(backend))
    await asyncio.sleep(0.3)
    argv = [sys.executable, "-c", ADD_ELSEWHERE, url, job_id]
    await asyncio.to_thread(subprocess.run, argv, check=True)
    return await fetch


async def test_add_through_another_object_wakes_fetch(url: str) -> None:
    a, b = await _opened(url), await _opened(url)
    try:
        fetch = asyncio.create_task(_timed_fetch(a))
        await asyncio.sleep(0.3)
        await Queue(Q, b).add("x", job_id="one")
        ids, waited = await fetch
        assert ids == ["one"] and waited < 3
    finally:
        await a.close()
        await b.close()


async def test_add_from_another_process_wakes_fetch(url: str) -> None:
    backend = await _opened(url)
    try:
        ids, waited = await _fetch_added_elsewhere(backend, url, "far")
        assert ids == ["far"] and waited < 5
    finally:
        await backend.close()


def _watches() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "polyjobs-wal-watch"]


@pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")
async def test_a_commit_from_another_process_wakes_fetch_without_polling(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With polls a minute apart, only the write-ahead log's watch can wake the fetch before
    its 10 s block ends: twice (the second after the watch was parked between fetches), and
    the watch's thread ends with the last backend of the file."""
    monkeypatch.setattr(sqlite_backend, "MIN_POLL", 60.0)
    monkeypatch.setattr(sqlite_backend, "MAX_POLL", 60.0)
    backend = await _opened(url)
    try:
        for job_id in ("far", "farther"):
            ids, waited = await _fetch_added_elsewhere(backend, url, job_id)
            assert ids == [job_id] and waited < 5
        assert len(_watches()) == 1
    finally:
        await backend.close()
    for thread in _watches():
        thread.join(5)
    assert not _watches()


async def test_without_a_watch_fetches_poll(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where inotify cannot be used, a commit from another process is found by the polls."""
    monkeypatch.setattr(watch, "start", lambda *args: None)
    backend = await _opened(url)
    try:
        ids, waited = await _fetch_added_elsewhere(backend, url, "polled")
        assert ids == ["polled"] and waited < 5 and not _watches()
    finally:
        await backend.close()


async def test_a_fetch_cancelled_in_the_turn_it_is_woken_is_cancelled(url: str) -> None:
    """The wake-up's wait ends in the same turn as the cancellation (a worker stopping while a
    commit pokes it): the fetch ends cancelled. With ``asyncio.wait_for`` (Python 3.11) the
    wait returned True, the cancellation was lost and the fetch went on waiting."""
    backend = await _opened(url)
    try:
        fetch = asyncio.create_task(backend.fetch(Q, "w", 1, 30.0, BLOCK))
        await asyncio.sleep(0.3)
        (event,) = FileSignal._files[str(backend.path.resolve())]._waiters[Q]
        event.set()
        fetch.cancel()
        await asyncio.wait([fetch], timeout=3)
        assert fetch.cancelled()
    finally:
        await backend.close()


async def test_delayed_job_wakes_fetch_when_due(url: str) -> None:
    backend = await _opened(url)
    try:
        await Queue(Q, backend).add("x", job_id="later", delay=0.4)
        ids, waited = await _timed_fetch(backend)
        assert ids == ["later"] and 0.35 <= waited < 3
    finally:
        await backend.close()


async def test_resume_wakes_fetch(url: str) -> None:
    backend = await _opened(url)
    try:
        await backend.pause(Q)
        await Queue(Q, backend).add("x", job_id="held")
        fetch = asyncio.create_task(_timed_fetch(backend))
        await asyncio.sleep(0.3)
        assert not fetch.done()
        await backend.resume(Q)
        ids, waited = await fetch
        assert ids == ["held"] and waited < 3
    finally:
        await backend.close()


async def test_close_ends_a_waiting_fetch(url: str) -> None:
    backend = await _opened(url)
    fetch = asyncio.create_task(_timed_fetch(backend))
    await asyncio.sleep(0.2)
    await backend.close()
    ids, waited = await fetch
    assert ids == [] and waited < 3


async def test_close_during_a_waiting_fetchs_look_ends_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close that lands while the waiting fetch is between its wait and its next look (the
    look then meets a closed database) ends the fetch with nothing, as a close during the wait
    does, instead of raising."""
    backend = await _opened(url)
    waits = 0

    async def close_instead_of_waiting(event: asyncio.Event, timeout: float) -> bool:
        nonlocal waits
        waits += 1
        await backend.close()
        return False  # the wait "timed out": the fetch goes on to read data_version

    monkeypatch.setattr(sqlite_backend, "wait_set", close_instead_of_waiting)
    ids, waited = await _timed_fetch(backend)
    assert waits == 1 and ids == [] and waited < 3


async def test_fetch_wakes_on_its_own_queue_only(url: str) -> None:
    backend = await _opened(url)
    try:
        fetch = asyncio.create_task(backend.fetch(Q, "w", 1, 30.0, 0.5))
        await asyncio.sleep(0.1)
        await Queue("other", backend).add("x")
        assert await fetch == []
    finally:
        await backend.close()
