"""Scenario 3: SIGTERM to ``polyjobs start`` while 100 jobs are active.

Jobs shorter than the grace finish; jobs longer than it are handed back to ``waiting`` once
the grace is over. Either way none stays ``active`` and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any

import pytest

from polyjobs import Queue, open_backend
from tests.chaos.chaos_support import MAIN_REDIS, POLYJOBS

ACTIVE = 100


async def _counts(url: str) -> dict[str, Any]:
    async with open_backend(url) as backend:
        return await Queue("chaos-sleep", backend).counts()


async def _stop_under_load(env: dict[str, str], job_seconds: float, grace: float) -> float:
    url = env["POLYJOBS_BACKEND"]
    async with open_backend(url) as backend:
        await Queue("chaos-sleep", backend).add_bulk(
            [("s", {"seconds": job_seconds}, {"remove_on_complete": False})] * ACTIVE
        )
    args = [POLYJOBS, "start", "-q", "sleep", "--no-schedule", "--grace", str(grace)]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(args, env=env, stdout=pipe, stderr=pipe, text=True)
    try:
        deadline = time.monotonic() + 20
        while (await _counts(url))["active"] < ACTIVE:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the 100 jobs never became active"
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        _, err = await asyncio.to_thread(proc.communicate, timeout=grace + 15)
        took = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "polyjobs: stopped" in err
    return took


@pytest.fixture(params=["redis", "sqlite"])
def start_env(
    request: pytest.FixtureRequest, cli_env: dict[str, str], main_prefix: str
) -> dict[str, str]:
    if request.param == "redis":
        return {**cli_env, "POLYJOBS_BACKEND": f"{MAIN_REDIS}?prefix={main_prefix}"}
    return {**cli_env, "POLYJOBS_BACKEND": f"sqlite:///{cli_env['POLYJOBS_HOME']}/jobs.db"}


async def test_sigterm_lets_100_active_jobs_finish_within_the_grace(
    start_env: dict[str, str],
) -> None:
    took = await _stop_under_load(start_env, job_seconds=2.0, grace=20.0)
    counts = await _counts(start_env["POLYJOBS_BACKEND"])
    assert (counts["active"], counts["waiting"], counts["completed"]) == (0, 0, ACTIVE)
    assert took < 10


async def test_sigterm_hands_100_long_jobs_back_after_the_grace(
    start_env: dict[str, str],
) -> None:
    grace = 1.0
    took = await _stop_under_load(start_env, job_seconds=60.0, grace=grace)
    counts = await _counts(start_env["POLYJOBS_BACKEND"])
    assert (counts["active"], counts["waiting"], counts["completed"]) == (0, ACTIVE, 0)
    assert grace <= took < grace + 5
