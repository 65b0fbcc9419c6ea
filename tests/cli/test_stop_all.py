"""`polyjobs stop --all` end to end: two `polyjobs start` processes (two state directories, as
on two machines) sharing one backend, stopped through the backend's control channel."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyjobs import Queue, open_backend
from tests.cli.support import POLYJOBS, polyjobs, stats, stats_once_started

QUEUES = ("test-echo", "test-slow", "test-fail")


@pytest.fixture
def shared(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The CLI environment with an explicit backend URL, so that every state directory uses it
    (on SQLite the default file lives in the state directory)."""
    env = dict(cli_env)
    env.setdefault("POLYJOBS_BACKEND", f"sqlite:///{tmp_path}/shared.db")
    return env


@pytest.fixture
def two_instances(shared: dict[str, str], tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Two `polyjobs start` processes, each with its own state directory, on one backend;
    ready once both have their workers in the registry."""
    procs = [
        subprocess.Popen(
            [POLYJOBS, "start", "--no-schedule"],
            env={**os.environ, **shared, "POLYJOBS_HOME": str(tmp_path / f"home-{n}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for proc in procs:
                assert proc.poll() is None, proc.communicate()
            rows = stats_once_started(shared)
            if all(rows.get(q, {}).get("workers", 0) >= 2 for q in QUEUES):
                break
            time.sleep(0.2)
        else:
            pytest.fail("two `polyjobs start` did not register their workers in 30 s")
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=5)


def add_slow_jobs(url: str, n: int, seconds: float) -> None:
    async def add() -> None:
        async with open_backend(url) as backend:
            await Queue("test-slow", backend).add_bulk([("job", {"seconds": seconds})] * n)

    asyncio.run(add())


def wait_for_active(url: str, n: int, timeout: float) -> int:
    async def wait() -> int:
        async with open_backend(url) as backend:
            queue = Queue("test-slow", backend)
            deadline = time.monotonic() + timeout
            while (active := int((await queue.counts())["active"])) < n:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return active

    return asyncio.run(wait())


def test_stop_all_stops_every_instance(
    shared: dict[str, str], two_instances: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    add_slow_jobs(shared["POLYJOBS_BACKEND"], 30, 4.0)
    # watched through the library: a `polyjobs stats` process takes about a second to start,
    # long enough to miss the window in which the jobs are active
    assert wait_for_active(shared["POLYJOBS_BACKEND"], 20, timeout=15) >= 20  # both are busy

    env = {**shared, "POLYJOBS_HOME": str(tmp_path / "home-operator")}
    stopped = polyjobs(env, "stop", "--all", "--timeout", "20", timeout=40)
    assert stopped.returncode == 0, stopped.stderr
    assert "every instance stopped" in stopped.stdout

    for proc in two_instances:
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    rows = stats(shared)
    assert all(rows[q]["workers"] == 0 for q in QUEUES)
    assert rows["test-slow"]["active"] == 0
    # the jobs in progress finished within the grace; the rest wait for the next start
    assert rows["test-slow"]["completed"] + rows["test-slow"]["waiting"] == 30
    assert rows["test-slow"]["failed"] == 0
