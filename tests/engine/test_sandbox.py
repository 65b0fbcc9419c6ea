"""Sandboxed processors: hard timeouts, crash isolation, progress and logs from the child."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from polyjobs import InvalidArgumentError, Job, Queue, Worker, open_backend
from polyjobs.backend import Backend
from tests.engine import sandbox_procs

FAST: dict[str, Any] = {"block": 0.2, "stalled_interval": 0.5, "heartbeat_interval": 0.5}


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with open_backend("memory://") as opened:
        yield opened


async def run_burst(backend: Backend, processor: Any, **options: Any) -> Worker:
    worker = Worker("sb", processor, backend, sandbox=True, **{**FAST, **options})
    await asyncio.wait_for(worker.run(burst=True), 60)
    return worker


async def test_a_blocking_job_is_killed_at_its_timeout_and_the_worker_goes_on(
    backend: Backend,
) -> None:
    queue = Queue("sb", backend)
    stuck = await queue.add("sleep", {"seconds": 60}, timeout=1.0)
    after = await queue.add("sleep", {"seconds": 0}, timeout=10.0)
    started = time.monotonic()
    await run_burst(backend, sandbox_procs.sleepy)
    assert time.monotonic() - started < 15  # not 60 s: the child was killed
    failed = await queue.get_job(stuck.id)
    assert failed is not None and failed.state == "failed"
    assert "timed out after 1s" in (failed.failed_reason or "")
    done = await queue.get_job(after.id)
    assert done is not None and done.state == "completed" and done.returnvalue == "woke"


@pytest.mark.parametrize(
    ("processor", "reason"),
    [(sandbox_procs.exits, "exited with code 1"), (sandbox_procs.segfault, "SIGSEGV")],
)
async def test_a_crashing_child_fails_only_its_job(
    backend: Backend, processor: Any, reason: str
) -> None:
    queue = Queue("sb", backend)
    crash = await queue.add("crash", {"code": 1}, attempts=1)
    await run_burst(backend, processor)
    failed = await queue.get_job(crash.id)
    assert (
        failed is not None and failed.state == "failed" and reason in (failed.failed_reason or "")
    )
    # the next job gets a fresh child
    ok = await queue.add("pid", {})
    await run_burst(backend, sandbox_procs.pid)
    done = await queue.get_job(ok.id)
    assert done is not None and done.state == "completed" and isinstance(done.returnvalue, int)


async def test_progress_and_logs_from_the_child_are_stored(backend: Backend) -> None:
    queue = Queue("sb", backend)
    job = await queue.add("chatty", {})
    seen: list[Any] = []
    worker = Worker("sb", sandbox_procs.chatty, backend, sandbox=True, **FAST)
    worker.on("progress", lambda j, p: seen.append(p))
    await asyncio.wait_for(worker.run(burst=True), 60)
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.returnvalue == "done" and stored.progress == 100
    assert await queue.logs(job.id) == ["step 25", "step 50", "step 100"]
    assert seen == [25, 50, 100]


async def test_children_are_recycled_after_max_jobs(backend: Backend) -> None:
    queue = Queue("sb", backend, default_options={"remove_on_complete": False})
    await queue.add_bulk([("pid", {}) for _ in range(6)])
    await run_burst(backend, sandbox_procs.pid, concurrency=1, sandbox_max_jobs=2)
    pids = [j.returnvalue for j in reversed(await queue.jobs("completed"))]
    assert len(pids) == 6
    assert len(set(pids)) == 3 and pids[0] == pids[1] and pids[1] != pids[2]


async def test_exceptions_cross_back_with_the_childs_stack(backend: Backend) -> None:
    queue = Queue("sb", backend)
    plain = await queue.add("bad", {"n": 7}, attempts=2, backoff=0)
    final = await queue.add("bad", {"unrecoverable": True}, attempts=5)
    await run_burst(backend, sandbox_procs.raises)
    failed = await queue.get_job(plain.id)
    assert failed is not None and failed.state == "failed" and failed.attempts_made == 2
    assert failed.failed_reason == "ValueError: bad input 7"
    assert "sandbox_procs.py" in (failed.stacktrace or "")
    gave_up = await queue.get_job(final.id)
    assert gave_up is not None and gave_up.attempts_made == 1
    assert gave_up.failed_reason == "no point retrying"


async def test_sandbox_refuses_what_the_child_cannot_import(backend: Backend) -> None:
    async def coro(job: Job) -> None:
        return None

    with pytest.raises(InvalidArgumentError, match="async"):
        Worker("sb", coro, backend, sandbox=True)
    with pytest.raises(InvalidArgumentError, match="module-level function"):
        Worker("sb", lambda job: None, backend, sandbox=True)
