"""`polyjobs jobs cancel` end to end: a running `polyjobs start` works on a slow job; another
process cancels it through the backend; the job stops and fails with the reason, no retry."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from polyjobs import Job, Queue, open_backend
from tests.cli.support import POLYJOBS, backend_url, polyjobs, wait_active


def _add(url: str, delay: float = 0) -> str:
    async def add() -> Job:
        async with open_backend(url) as backend:
            return await Queue("test-slow", backend).add(
                "job", {"seconds": 120}, attempts=3, delay=delay
            )

    return asyncio.run(add()).id


def _job(url: str, job_id: str) -> Job:
    async def get() -> Job:
        async with open_backend(url) as backend:
            return await Queue("test-slow", backend).require_job(job_id)

    return asyncio.run(get())


@pytest.mark.parametrize("cli_env", ["sqlite"], indirect=True)  # every backend: the contract
def test_cancel_stops_a_job_running_in_another_process(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(cli_env)
    env.setdefault("POLYJOBS_BACKEND", f"sqlite:///{tmp_path}/shared.db")
    url = backend_url(env)
    running = _add(url)
    later = _add(url, delay=300)
    proc = subprocess.Popen(
        [POLYJOBS, "start", "--no-schedule"],
        env={**os.environ, **env, "POLYJOBS_HOME": str(tmp_path / "home-worker")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_active(env, "test-slow", 1)
        operator = {**env, "POLYJOBS_HOME": str(tmp_path / "home-operator")}
        told = polyjobs(operator, "jobs", "cancel", "slow", running, "--reason", "ops said so")
        assert told.returncode == 0, told.stderr
        assert "told to stop" in told.stdout
        deadline = time.monotonic() + 20
        while (job := _job(url, running)).state == "active" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (job.state, job.failed_reason, job.attempts_made) == ("failed", "ops said so", 1)
        assert proc.poll() is None  # the instance goes on

        done = polyjobs(operator, "jobs", "cancel", "test-slow", later)
        assert done.returncode == 0, done.stderr
        assert "had not started" in done.stdout
        assert _job(url, later).state == "failed"

        refused = polyjobs(operator, "jobs", "cancel", "test-slow", later, "--reason", "again")
        assert refused.returncode == 1  # it has ended: one line, no traceback
        assert "cannot be cancelled" in refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) == 1
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
    if proc.returncode not in (0, -15):
        pytest.fail(f"polyjobs start exited with {proc.returncode}")
