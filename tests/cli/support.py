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


def add_jobs(env: dict[str, str], queue: str, datas: list[dict[str, Any]]) -> None:
    """Add jobs in one bulk call through the library, on the backend the CLI uses."""
    url = env.get("POLYJOBS_BACKEND") or f"sqlite:///{env['POLYJOBS_HOME']}/polyjobs.db"

    async def add() -> None:
        async with open_backend(url) as backend:
            await Queue(queue, backend).add_bulk([("job", data) for data in datas])

    asyncio.run(add())


def wait_active(env: dict[str, str], queue: str, n: int) -> None:
    deadline = time.monotonic() + 15
    while stats(env)[queue]["active"] < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stats(env)[queue]["active"] == n
