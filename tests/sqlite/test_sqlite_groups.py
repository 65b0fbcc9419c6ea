"""Job groups on SQLite beyond the contract suite: queues without groups keep their jobs'
group column empty, and groups none of whose jobs is left are forgotten."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from polyjobs import Job, Queue, Worker, open_backend


def _rows(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_groups_come_with_the_first_grouped_job_and_go_with_the_last(
    tmp_path: Path,
) -> None:
    path = tmp_path / "groups.db"

    async def noop(job: Job) -> Any:
        return None

    async with open_backend(f"sqlite:///{path}") as backend:
        queue = Queue("g", backend, default_options={"remove_on_complete": True})
        await queue.add("plain", 1)
        assert _rows(path, "SELECT grp FROM jobs") == [(None,)]  # no groups: nothing changes
        await queue.add_bulk([("j", i, {"group": f"wallet-{i}"}) for i in range(300)])
        assert _rows(path, "SELECT count(*) FROM jobs WHERE grp IS NULL") == [(0,)]
        assert _rows(path, "SELECT count(*) FROM job_groups") == [(301,)]  # and '' for plain
        await Worker("g", noop, backend, concurrency=10, block=0.1).run(burst=True)
        assert (await queue.counts())["waiting"] == 0
        # every job was removed at its end: their groups are forgotten as the turns go on
        # (every 256 turns)
        assert _rows(path, "SELECT count(*) FROM job_groups")[0][0] < 100
        await queue.add_bulk([("plain", i) for i in range(300)])
        await Worker("g", noop, backend, concurrency=10, block=0.1).run(burst=True)
        assert _rows(path, "SELECT grp FROM job_groups") == [("",)]
        await queue.add("again", 2, group="wallet-7")
        taken = await backend.fetch("g", "w", 9, 30, 0)
        assert [j.opts["group"] for j in taken] == ["wallet-7"]


_SHORT_LIVED_WORKER = """
import asyncio, sys
from polyjobs import Queue, Worker, open_backend

async def main(url: str, first: int) -> None:
    async def noop(job):
        return None

    async with open_backend(url) as backend:
        queue = Queue("g", backend, default_options={"remove_on_complete": True})
        await queue.add_bulk([("j", i, {"group": f"w-{i}"}) for i in range(first, first + 150)])
        await Worker("g", noop, backend, concurrency=10, block=0.1).run(burst=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_groups_are_forgotten_across_short_lived_worker_processes(tmp_path: Path) -> None:
    """Three processes, each adding 150 jobs in new groups and running them (150 turns each,
    fewer than the 256 between prunes): the turns count across processes, so the groups of
    the jobs gone are forgotten once the third process is past turn 256."""
    path = tmp_path / "short.db"
    for first in (0, 150, 300):
        done = subprocess.run(
            [sys.executable, "-c", _SHORT_LIVED_WORKER, f"sqlite:///{path}", str(first)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert _rows(path, "SELECT count(*) FROM jobs") == [(0,)]
    assert _rows(path, "SELECT count(*) FROM job_groups")[0][0] < 300
