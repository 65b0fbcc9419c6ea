"""Queue.cancel's own checks, and a sandboxed job killed by a cancel (memory backend)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from polyjobs import InvalidArgumentError, Job, Queue, Worker, open_backend


def sandboxed_sleeper(job: Job) -> int:
    """Runs in a sandbox child: writes its pid, then sleeps far longer than the test."""
    with open(job.data, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_cancel_needs_a_reason_and_a_valid_id() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("cancel-checks", backend)
        job = await queue.add("j", 1)
        for reason in ("", "   ", "x" * 1001):
            with pytest.raises(InvalidArgumentError, match="reason"):
                await queue.cancel(job.id, reason)
        assert (await queue.require_job(job.id)).state == "waiting"


async def test_a_cancelled_sandboxed_job_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with open_backend("memory://") as backend:
        queue = Queue("cancel-sandbox", backend)
        job = await queue.add("j", str(pid_file), attempts=3)
        worker = Worker(
            queue.name, sandboxed_sleeper, backend, sandbox=True, cancel_interval=0.05, block=0.2
        )
        task = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 20
            while not pid_file.exists() or not pid_file.read_text():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            child = int(pid_file.read_text())
            assert await queue.cancel(job.id, "kill it") == "requested"
            while (got := await queue.require_job(job.id)).state == "active":
                assert time.monotonic() < deadline, "the sandboxed job was not stopped"
                await asyncio.sleep(0.02)
            assert (got.state, got.failed_reason, got.attempts_made) == ("failed", "kill it", 1)
            while _alive(child):  # killed by the cancel, not by the close below
                assert time.monotonic() < deadline, "the sandbox child still runs"
                await asyncio.sleep(0.02)
            assert worker.running
        finally:
            await worker.close(1)
            await task
