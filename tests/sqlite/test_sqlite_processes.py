"""Several real processes on one SQLite file: exactly-once processing, crash recovery, durability.

Each child runs ``sqlite_proc.py`` with this interpreter. Every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyjobs import Queue, open_backend

PROC = str(Path(__file__).with_name("sqlite_proc.py"))
Q = "mp"


class Children:
    """Child processes started by one test; all of them are gone when it ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, PROC, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.close()


def _line(proc: subprocess.Popen[str], prefix: str) -> str:
    """The next stdout line of ``proc``, which must start with ``prefix``."""
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith(prefix):
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"child said {line!r}, expected {prefix!r}; stderr: {err[-2000:]}")
    return line


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err[-2000:]


def _records(files: list[Path]) -> list[int]:
    out: list[int] = []
    for path in files:
        if path.exists():
            out += [int(x) for x in path.read_text().split()]
    return out


async def _wait_completed(url: str, total: int, limit: float) -> dict[str, int]:
    deadline = time.monotonic() + limit
    async with open_backend(url) as backend:
        while True:
            counts = await backend.counts(Q)
            if counts["completed"] >= total or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.1)


async def test_three_workers_two_producers_each_job_once(
    tmp_path: Path, children: Children
) -> None:
    url = f"sqlite:///{tmp_path}/mp.db"
    total = 3000
    records = [tmp_path / f"worker{i}.txt" for i in range(3)]
    workers = [children.start("work", url, Q, str(r), "10", "30") for r in records]
    for proc in workers:
        _line(proc, "ready")
    producers = [
        children.start("produce", url, Q, "0", "1500", "1"),  # one add per job
        children.start("produce", url, Q, "1500", "1500", "50"),  # bulk adds
    ]
    for proc in producers:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
    counts = await _wait_completed(url, total, 60)
    for proc in workers:
        _stop(proc)
    done = _records(records)
    assert counts == {
        "waiting": 0,
        "active": 0,
        "delayed": 0,
        "waiting-children": 0,
        "completed": total,
        "failed": 0,
    }
    assert sorted(done) == list(range(total))  # every job ran, and none twice
    per_worker = [len(_records([r])) for r in records]
    assert all(n > 0 for n in per_worker), per_worker


async def test_killed_worker_job_is_recovered_by_another_process(
    tmp_path: Path, children: Children
) -> None:
    url = f"sqlite:///{tmp_path}/kill.db"
    async with open_backend(url) as backend:
        await Queue(Q, backend).add("slow", {"n": 7}, job_id="victim")
    first = children.start("work", url, Q, str(tmp_path / "a.txt"), "1", "1.0", "slow")
    _line(first, "ready")
    assert _line(first, "started").endswith("victim")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # the second worker processes "slow" jobs normally
    second = children.start("work", url, Q, str(tmp_path / "b.txt"), "1", "1.0", "-")
    _line(second, "ready")
    counts = await _wait_completed(url, 1, 20)
    _stop(second)
    assert counts["completed"] == 1
    assert _records([tmp_path / "b.txt"]) == [7]
    assert _records([tmp_path / "a.txt"]) == []
    async with open_backend(url) as backend:
        job = await backend.get_job(Q, "victim")
    assert job is not None and job.state == "completed" and job.stalls == 1


async def test_added_job_survives_a_killed_process(tmp_path: Path, children: Children) -> None:
    url = f"sqlite:///{tmp_path}/durable.db"
    proc = children.start("add-and-wait", url, Q)
    _line(proc, "added keep-me")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert (tmp_path / "durable.db-wal").exists()  # no checkpoint ran: the job is in the WAL
    async with open_backend(url) as backend:
        job = await backend.get_job(Q, "keep-me")
        counts = await backend.counts(Q)
    assert job is not None and job.state == "waiting" and job.data == {"n": 1}
    assert counts["waiting"] == 1


def test_processes_opening_a_new_file_at_once_all_succeed(
    tmp_path: Path, children: Children
) -> None:
    url = f"sqlite:///{tmp_path}/new/first.db"
    procs = [children.start("open", url) for _ in range(5)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert out.strip() == "OK", out + err[-2000:]


def test_opening_while_another_process_writes_and_checkpoints(
    tmp_path: Path, children: Children
) -> None:
    url = f"sqlite:///{tmp_path}/busy.db"
    producer = children.start("produce", url, Q, "0", "20000", "500")
    opened = 0
    while producer.poll() is None and opened < 20:
        out, err = children.start("open", url).communicate(timeout=60)
        assert out.strip() == "OK", out + err[-2000:]
        opened += 1
    _, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err[-2000:]
    assert opened > 0
