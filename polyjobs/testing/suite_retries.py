"""Contract: failures, attempts, backoff, timeouts, processor signals and job events."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from polyjobs.errors import (
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    RetryAfter,
    UnrecoverableError,
    WaitTimeoutError,
)
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase, Recorder


class _Flaky:
    """A processor failing its first ``failures`` calls, recording when each call starts and
    ends."""

    def __init__(self, failures: int, error: type[Exception] = ValueError) -> None:
        self.failures = failures
        self.error = error
        self.starts: list[float] = []
        self.ends: list[float] = []

    async def __call__(self, job: Job) -> Any:
        self.starts.append(time.time())
        try:
            if len(self.starts) <= self.failures:
                raise self.error(f"flaky failure {len(self.starts)}")
            return "ok"
        finally:
            self.ends.append(time.time())

    def gaps(self) -> list[float]:
        return [s - e for s, e in zip(self.starts[1:], self.ends, strict=False)]


class RetriesContract(ContractBase):
    async def test_fixed_backoff(self, queue: Queue) -> None:
        proc = _Flaky(failures=2)
        job = await queue.add("b", None, attempts=3, backoff={"type": "fixed", "delay": 0.3})
        await self.burst(queue, proc)
        assert len(proc.starts) == 3
        for gap in proc.gaps():
            assert gap >= 0.3, "retried before its backoff"
            assert gap < 0.3 + 1.5, "retried far too late"
        done = await queue.require_job(job.id)
        assert (done.state, done.attempts_made, done.returnvalue) == ("completed", 3, "ok")

    async def test_exponential_backoff(self, queue: Queue) -> None:
        proc = _Flaky(failures=3)
        await queue.add("b", None, attempts=4, backoff={"type": "exponential", "delay": 0.1})
        await self.burst(queue, proc)
        gaps = proc.gaps()
        assert len(gaps) == 3
        for gap, expected in zip(gaps, (0.1, 0.2, 0.4), strict=True):
            assert gap >= expected, f"retried after {gap:.3f}s, before its backoff {expected}s"
            assert gap < expected + 1.5

    async def test_retry_waits_in_delayed_state(self, queue: Queue) -> None:
        proc = _Flaky(failures=1)
        job = await queue.add("b", None, attempts=2, backoff=30)
        worker = self.make_worker(queue, proc)
        retrying = Recorder()
        worker.on("retrying", retrying.callback)
        async with self.running(worker):
            await retrying.wait_for(1)
            await self._wait_state(queue, job.id, "delayed")
            stored = await queue.require_job(job.id)
            assert stored.attempts_made == 1
            assert stored.failed_reason == "flaky failure 1"
            assert stored.run_at >= proc.ends[0] + 29
        assert len(proc.starts) == 1

    async def _wait_state(self, queue: Queue, job_id: str, state: str) -> None:
        from polyjobs.testing.support import wait_until

        async def holds() -> bool:
            return await self.state_of(queue, job_id) == state

        await wait_until(holds, what=f"job {job_id} in state {state}")

    async def test_attempts_exhausted_fail_with_reason_and_stacktrace(self, queue: Queue) -> None:
        calls = 0

        async def broken_processor(job: Job) -> None:
            nonlocal calls
            calls += 1
            raise KeyError(f"missing thing {calls}")

        job = await queue.add("b", None, attempts=3)
        worker = self.make_worker(queue, broken_processor)
        failed, retrying = Recorder(), Recorder()
        worker.on("failed", failed.callback)
        worker.on("retrying", retrying.callback)
        await self.run_burst(worker)
        assert calls == 3
        done = await queue.require_job(job.id)
        assert done.state == "failed" and done.attempts_made == 3
        assert done.failed_reason is not None and "missing thing 3" in done.failed_reason
        assert done.stacktrace is not None
        assert "KeyError" in done.stacktrace and "broken_processor" in done.stacktrace
        assert done.finished_on is not None
        assert len(failed) == 1 and len(retrying) == 2
        failed_job, error = failed.items[0]
        assert failed_job.id == job.id and isinstance(error, KeyError)
        counts = await queue.counts()
        assert (counts["failed"], counts["waiting"], counts["delayed"]) == (1, 0, 0)

    async def test_timeout_fails_frees_the_slot_and_retries(self, queue: Queue) -> None:
        runs: list[str] = []

        async def proc(job: Job) -> str:
            runs.append(job.name)
            if job.name == "slow":
                await asyncio.sleep(30)
            return "done"

        slow = await queue.add("slow", None, timeout=0.2, attempts=2)
        fast = await queue.add("fast", None)
        began = time.monotonic()
        await self.burst(queue, proc, concurrency=1)
        assert time.monotonic() - began < 5.0
        # the timed-out attempt freed the only slot: "fast" ran before the retry
        assert runs == ["slow", "fast", "slow"]
        done = await queue.require_job(slow.id)
        assert done.state == "failed" and done.attempts_made == 2
        assert done.failed_reason is not None and "timed out" in done.failed_reason
        assert done.stacktrace is not None and "JobTimeoutError" in done.stacktrace
        assert await self.state_of(queue, fast.id) == "completed"

    async def test_worker_default_timeout_applies_to_jobs_without_one(self, queue: Queue) -> None:
        async def proc(job: Job) -> str:
            await asyncio.sleep(0.5 if job.name == "slow" else 0)
            return "done"

        slow = await queue.add("slow", None)
        patient = await queue.add("slow", None, timeout=5)
        await self.burst(queue, proc, within=5, timeout=0.1)
        failed = await queue.require_job(slow.id)
        assert failed.state == "failed" and "timed out" in (failed.failed_reason or "")
        assert await self.state_of(queue, patient.id) == "completed"

    async def test_timeout_of_a_sync_processor(self, queue: Queue) -> None:
        def slow_sync(job: Job) -> str:
            if job.name == "slow":
                time.sleep(0.5)
            return "done"

        slow = await queue.add("slow", None, timeout=0.2)
        fast = await queue.add("fast", None)
        began = time.monotonic()
        await self.burst(queue, slow_sync, concurrency=1)
        assert time.monotonic() - began < 3.0
        done = await queue.require_job(slow.id)
        assert done.state == "failed"
        assert done.failed_reason is not None and "timed out" in done.failed_reason
        assert await self.state_of(queue, fast.id) == "completed"

    async def test_timeout_error_reaches_the_failed_listener(self, queue: Queue) -> None:
        async def proc(job: Job) -> None:
            await asyncio.sleep(30)

        await queue.add("slow", None, timeout=0.1)
        worker = self.make_worker(queue, proc)
        failed = Recorder()
        worker.on("failed", failed.callback)
        await self.run_burst(worker)
        assert len(failed) == 1 and isinstance(failed.items[0][1], JobTimeoutError)

    async def test_unrecoverable_error_fails_at_once(self, queue: Queue) -> None:
        proc = _Flaky(failures=10, error=UnrecoverableError)
        job = await queue.add("u", None, attempts=5, backoff=0.01)
        await self.burst(queue, proc)
        assert len(proc.starts) == 1
        done = await queue.require_job(job.id)
        assert done.state == "failed" and done.attempts_made == 1
        assert done.failed_reason == "flaky failure 1"

    async def test_error_without_message_and_result_that_is_not_json(self, queue: Queue) -> None:
        async def proc(job: Job) -> Any:
            if job.name == "bare":
                raise ValueError
            return {1, 2}  # a set is not JSON: the job fails, the worker goes on

        bare = await queue.add("bare", None)
        odd = await queue.add("odd", None)
        ok = await queue.add("bare-ok", None)
        await self.burst(queue, lambda j: "fine" if j.name == "bare-ok" else proc(j))
        assert (await queue.require_job(bare.id)).failed_reason == "ValueError"
        failed = await queue.require_job(odd.id)
        assert failed.state == "failed"
        assert failed.failed_reason is not None and "JSON" in failed.failed_reason
        assert await self.state_of(queue, ok.id) == "completed"

    async def test_backoff_jitter_stays_within_bounds(self, queue: Queue) -> None:
        proc = _Flaky(failures=2)
        await queue.add(
            "j", None, attempts=3, backoff={"type": "fixed", "delay": 0.4, "jitter": 0.5}
        )
        await self.burst(queue, proc)
        for gap in proc.gaps():
            assert gap >= 0.2, "retried before the jittered backoff"
            assert gap < 0.4 + 1.5

    async def test_cancelled_error_from_the_processor_is_a_failure(self, queue: Queue) -> None:
        async def proc(job: Job) -> str:
            if job.attempts_made == 0:
                raise asyncio.CancelledError  # e.g. leaked by a library the processor calls
            return "second try"

        job = await queue.add("c", None, attempts=2)
        worker = self.make_worker(queue, proc)
        async with self.running(worker, grace=0.5):
            result = await job.wait(timeout=1.0)
        assert result == "second try"
        done = await queue.require_job(job.id)
        assert done.attempts_made == 2 and done.failed_reason == "CancelledError"

    async def test_retry_after_is_honoured(self, queue: Queue) -> None:
        starts: list[float] = []
        ends: list[float] = []

        async def proc(job: Job) -> str:
            starts.append(time.time())
            if len(starts) == 1:
                ends.append(time.time())
                raise RetryAfter(0.4, "rate limited")
            return "sent"

        job = await queue.add("r", None, attempts=3, backoff=30)  # RetryAfter overrides backoff
        await self.burst(queue, proc)
        assert len(starts) == 2
        assert starts[1] - ends[0] >= 0.4, "retried before RetryAfter's delay"
        assert starts[1] - ends[0] < 0.4 + 1.5
        done = await queue.require_job(job.id)
        assert (done.state, done.returnvalue, done.attempts_made) == ("completed", "sent", 2)

    async def test_retry_after_without_attempts_left_fails(self, queue: Queue) -> None:
        async def proc(job: Job) -> None:
            raise RetryAfter(0.1, "rate limited")

        job = await queue.add("r", None, attempts=1)
        await self.burst(queue, proc)
        done = await queue.require_job(job.id)
        assert done.state == "failed" and done.failed_reason == "rate limited"

    async def test_wait_returns_the_result(self, queue: Queue) -> None:
        job = await queue.add("w", {"x": 2})

        async def proc(j: Job) -> dict[str, Any]:
            return {"double": j.data["x"] * 2}

        async with self.running(self.make_worker(queue, proc)):
            assert await job.wait(timeout=5) == {"double": 4}

    async def test_wait_raises_job_failed_error(self, queue: Queue) -> None:
        job = await queue.add("w", None)

        async def proc(j: Job) -> None:
            raise RuntimeError("nope")

        async with self.running(self.make_worker(queue, proc)):
            with pytest.raises(JobFailedError) as info:
                await job.wait(timeout=5)
        assert info.value.job_id == job.id and info.value.reason == "nope"

    async def test_wait_on_a_job_removed_at_completion(self, queue: Queue) -> None:
        job = await queue.add("w", None, remove_on_complete=True)
        await self.burst(queue, lambda j: None)
        with pytest.raises(JobNotFoundError):
            await job.wait(timeout=2)

    async def test_wait_times_out(self, queue: Queue) -> None:
        job = await queue.add("w", None)
        began = time.monotonic()
        with pytest.raises(WaitTimeoutError):
            await job.wait(timeout=0.2)
        assert 0.2 <= time.monotonic() - began < 2.0

    async def test_events(self, queue: Queue) -> None:
        async def proc(job: Job) -> Any:
            await job.update_progress(50)
            if job.name == "bad" and job.attempts_made == 0:
                raise ValueError("first try")
            if job.name == "bad":
                raise ValueError("second try")
            return job.data

        await queue.add("good", 7)
        bad = await queue.add("bad", None, attempts=2)
        worker = self.make_worker(queue, proc)
        events: dict[str, Recorder] = {}
        for name in ("completed", "failed", "retrying", "progress"):
            events[name] = Recorder()
            worker.on(name, events[name].callback)
        async_completed = Recorder()

        async def on_completed(job: Job, result: Any) -> None:
            async_completed.add(result)

        worker.on("completed", on_completed)
        await self.run_burst(worker)
        await async_completed.wait_for(1, timeout=2)
        assert [(j.name, r) for j, r in events["completed"].items] == [("good", 7)]
        assert async_completed.items == [7]
        assert [(j.id, str(e)) for j, e in events["failed"].items] == [(bad.id, "second try")]
        assert [(j.id, str(e)) for j, e in events["retrying"].items] == [(bad.id, "first try")]
        assert sorted(p for _, p in events["progress"].items) == [50, 50, 50]
