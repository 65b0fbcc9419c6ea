"""Opening the embedded store: several processes at once, and where its file lives."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from polyjobs.polymarket.config import load_config

OPEN = """
import asyncio, sys, time
from polyjobs.polymarket.sqlite_store import SqliteStore
async def main():
    for n in range(int(sys.argv[3])):
        store = SqliteStore(f"{sys.argv[1]}/{n}.db")
        time.sleep(max(float(sys.argv[2]) + n * 0.3 - time.time(), 0))  # all open together
        await store.open()
        await store.close()
asyncio.run(main())
"""


def test_processes_opening_a_new_store_file_at_once_all_succeed(tmp_path: Path) -> None:
    """8 processes open 5 new files, each file by all of them at the same instant (switching a
    new file to WAL does not wait on the busy timeout: without retries some fail)."""
    start = time.time() + 2.0  # after every interpreter has started
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(tmp_path), str(start), "5"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(p.wait(60), p.communicate()[1]) for p in procs]
    assert all(code == 0 for code, _ in results), results


def test_the_default_store_lives_in_the_state_directory(tmp_path: Path) -> None:
    config = load_config({"POLYJOBS_HOME": str(tmp_path / "state")})
    assert config.store_url == f"sqlite:///{tmp_path / 'state' / 'polymarket.db'}"
    assert load_config({}).store_url == "sqlite:///.polyjobs/polymarket.db"
