"""Helpers for driving the ``polyjobs`` CLI as real processes in tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from polyjobs import Queue, open_backend

POLYJOBS = str(Path(sys.executable).parent / "polyjobs")
Completed = subprocess.CompletedProcess[str]


def polyjobs(
    env: dict[str, str], *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POLYJOBS, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stats(env: dict[str, str]) -> dict[str, Any]:
    done = polyjobs(env, "stats", "--json")
    assert done.returncode == 0, done.stderr
    return {row["queue"]: row for row in json.loads(done.stdout)}


def backend_url(env: dict[str, str]) -> str:
    """The backend the CLI uses in ``env``."""
    return env.get("POLYJOBS_BACKEND") or f"sqlite:///{env['POLYJOBS_HOME']}/polyjobs.db"


def stats_once_started(env: dict[str, str]) -> dict[str, Any]:
    """``stats`` while a ``polyjobs start`` is starting: empty until its backend file exists
    (a look-up never creates one)."""
    done = polyjobs(env, "stats", "--json")
    if done.returncode != 0 and "no polyjobs database at" in done.stderr:
        return {}
    assert done.returncode == 0, done.stderr
    return {row["queue"]: row for row in json.loads(done.stdout)}


def add_jobs(env: dict[str, str], queue: str, datas: list[dict[str, Any]]) -> None:
    """Add jobs in one bulk call through the library, on the backend the CLI uses."""

    async def add() -> None:
        async with open_backend(backend_url(env)) as backend:
            await Queue(queue, backend).add_bulk([("job", data) for data in datas])

    asyncio.run(add())


def wait_active(env: dict[str, str], queue: str, n: int) -> None:
    """Wait until ``n`` jobs of ``queue`` are active. Watched through the library: a `polyjobs
    stats` process takes a second or more to start on a loaded machine, long enough to miss the
    window in which the jobs are active."""

    async def wait() -> int:
        async with open_backend(backend_url(env)) as backend:
            deadline = time.monotonic() + 30
            while (active := int((await Queue(queue, backend).counts())["active"])) < n:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return active

    assert asyncio.run(wait()) == n
