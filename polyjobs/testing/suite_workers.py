"""Contract: workers: concurrency, sync processors, pause, close, leases and stalled jobs."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from typing import Any, cast

import pytest

from polyjobs.backend import Backend, Finish, WorkerInfo
from polyjobs.errors import BackendError
from polyjobs.job import Job
from polyjobs.options import Keep
from polyjobs.queue import Queue
from polyjobs.testing.faults import (
    CountingBackend,
    FaultyBackend,
    LostReplyBackend,
    NoRenewalBackend,
)
from polyjobs.testing.support import ContractBase, Recorder, noop, wait_until

DEAD = "dead-token"  # the token of a worker that fetched a job and died


class WorkersContract(ContractBase):
    async def test_concurrency_is_never_exceeded(self, queue: Queue) -> None:
        n = 4
        in_flight = peak = 0

        async def proc(job: Job) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1

        await queue.add_bulk([("slow", i) for i in range(5 * n)])
        await self.burst(queue, proc, concurrency=n)
        assert peak == n
        assert (await queue.counts())["completed"] == 5 * n

    async def test_concurrency_holds_through_failures_and_retries(self, queue: Queue) -> None:
        n = 3
        in_flight = peak = 0
        runs: Counter[str] = Counter()

        async def proc(job: Job) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                runs[job.id] += 1
                await asyncio.sleep((0, 0.001, 0.01)[int(job.data) % 3])
                if runs[job.id] == 1 and int(job.data) % 2:
                    raise ValueError("first attempt fails")
            finally:
                in_flight -= 1

        await queue.add_bulk([("mixed", i, {"attempts": 2}) for i in range(10 * n)])
        await self.burst(queue, proc, concurrency=n)
        assert peak == n
        assert sorted(runs.values()) == [1] * (5 * n) + [2] * (5 * n)
        counts = await queue.counts()
        assert (counts["completed"], counts["failed"]) == (10 * n, 0)

    async def test_a_thousand_jobs_each_run_once(self, queue: Queue) -> None:
        seen: Counter[int] = Counter()

        async def proc(job: Job) -> int:
            seen[job.data] += 1
            return int(job.data)

        await queue.add_bulk([("many", i, {"remove_on_complete": False}) for i in range(1000)])
        await self.burst(queue, proc, concurrency=10, within=30)
        assert seen == Counter(range(1000))
        counts = await queue.counts()
        assert (counts["completed"], counts["waiting"], counts["active"]) == (1000, 0, 0)

    async def test_sync_processor_runs_in_a_thread(self, queue: Queue) -> None:
        threads: set[int] = set()

        def proc(job: Job) -> dict[str, Any]:
            threads.add(threading.get_ident())
            job.update_progress_sync(100)
            job.log_sync(f"handled {job.data}")
            time.sleep(0.05)
            return {"got": job.data}

        jobs = [await queue.add("sync", i) for i in range(4)]
        began = time.monotonic()
        await self.burst(queue, proc, concurrency=4)
        assert time.monotonic() - began < 2.0
        assert threading.get_ident() not in threads
        for i, job in enumerate(jobs):
            done = await queue.require_job(job.id)
            assert (done.state, done.returnvalue, done.progress) == ("completed", {"got": i}, 100)
            assert await queue.logs(job.id) == [f"handled {i}"]

    async def test_sync_processors_reach_full_concurrency(self, queue: Queue) -> None:
        n = min(32, (os.cpu_count() or 1) + 4) + 1  # one more than asyncio's default pool
        lock, all_in = threading.Lock(), threading.Event()
        in_flight = peak = 0

        def proc(job: Job) -> None:
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
                if in_flight == n:
                    all_in.set()
            all_in.wait(5)  # returns as soon as all are in; long only when one never comes
            with lock:
                in_flight -= 1

        await queue.add_bulk([("sync", i) for i in range(n)])
        await self.burst(queue, proc, concurrency=n)
        assert peak == n

    async def test_pause_stops_fetching_and_resume_resumes(self, queue: Queue) -> None:
        done = Recorder()
        worker = self.make_worker(queue, lambda j: j.data, block=0.1)
        worker.on("completed", done.callback)
        async with self.running(worker):
            await queue.add("before", 0)
            await done.wait_for(1)
            await queue.pause()
            assert await queue.is_paused() is True
            for i in range(3):
                await queue.add("during", i)
            await asyncio.sleep(0.4)  # a paused queue must stay untouched for a while
            assert len(done) == 1
            counts = await queue.counts()
            assert (counts["waiting"], counts["active"], counts["paused"]) == (3, 0, True)
            await queue.resume()
            assert await queue.is_paused() is False
            await done.wait_for(4)
        assert (await queue.counts())["completed"] == 4

    async def test_resume_wakes_a_blocked_fetch(self, queue: Queue, backend: Backend) -> None:
        await queue.pause()
        job = await queue.add("x", None)
        fetch = asyncio.create_task(backend.fetch(queue.name, "tok", 1, 5.0, 5.0))
        await asyncio.sleep(0.1)
        assert not fetch.done()
        began = time.monotonic()
        await queue.resume()
        got = await asyncio.wait_for(fetch, 6.0)
        assert [r.id for r in got] == [job.id]
        assert time.monotonic() - began < 2.5, "resume did not wake a blocked fetch (block 5 s)"

    async def test_fetch_returns_nothing_while_paused(self, queue: Queue, backend: Backend) -> None:
        await queue.add("x", 1)
        await queue.pause()
        assert await backend.fetch(queue.name, "tok", 5, 5.0, 0) == []
        assert await backend.fetch(queue.name, "tok", 5, 5.0, 0.1) == []
        await queue.resume()
        assert len(await backend.fetch(queue.name, "tok", 5, 5.0, 0)) == 1

    async def test_graceful_close_waits_for_active_jobs(self, queue: Queue) -> None:
        started = Recorder()

        async def proc(job: Job) -> str:
            started.add(job.id)
            await asyncio.sleep(0.3)
            return "finished"

        job = await queue.add("x", None)
        untouched = await queue.add("y", None)
        worker = self.make_worker(queue, proc)
        completed = Recorder()
        worker.on("completed", completed.callback)
        task = asyncio.create_task(worker.run())
        await started.wait_for(1)
        await asyncio.wait_for(worker.close(grace=5), 8)
        await asyncio.wait_for(task, 5)
        assert len(completed) == 1
        done = await queue.require_job(job.id)
        assert (done.state, done.returnvalue) == ("completed", "finished")
        # a closing worker takes no new job
        assert started.items == [job.id]
        assert await self.state_of(queue, untouched.id) == "waiting"

    async def test_close_with_short_grace_hands_jobs_back(self, queue: Queue) -> None:
        started = Recorder()

        async def stuck(job: Job) -> None:
            started.add(job.id)
            await asyncio.sleep(30)

        jobs = [await queue.add("x", i) for i in range(2)]
        worker = self.make_worker(queue, stuck, concurrency=2)
        task = asyncio.create_task(worker.run())
        await started.wait_for(2)
        began = time.monotonic()
        await asyncio.wait_for(worker.close(grace=0.1), 8)
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - began < 3.0
        counts = await queue.counts()
        assert (counts["active"], counts["waiting"]) == (0, 2)
        for job in jobs:
            back = await queue.require_job(job.id)
            assert back.state == "waiting" and back.attempts_made == 0
        await self.burst(queue, lambda j: j.data)
        for job in jobs:
            done = await queue.require_job(job.id)
            assert done.state == "completed" and done.attempts_made == 1

    async def test_close_with_short_grace_hands_back_a_sync_job(self, queue: Queue) -> None:
        started = Recorder()

        def stuck(job: Job) -> str:
            started.add(job.id)
            time.sleep(0.4)
            return "too late"

        job = await queue.add("x", None)
        worker = self.make_worker(queue, stuck)
        task = asyncio.create_task(worker.run())
        await started.wait_for(1)
        began = time.monotonic()
        await asyncio.wait_for(worker.close(grace=0.1), 8)
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - began < 3.0
        back = await queue.require_job(job.id)
        assert (back.state, back.attempts_made) == ("waiting", 0)
        await asyncio.sleep(0.5)  # the abandoned thread ends: its result must not land
        back = await queue.require_job(job.id)
        assert (back.state, back.returnvalue) == ("waiting", None)

    async def test_idle_worker_neither_polls_nor_delays_close(self, queue: Queue) -> None:
        calls: Counter[str] = Counter()
        backend = CountingBackend(queue.backend, calls)
        worker = self.make_worker(Queue(queue.name, cast(Backend, backend)), noop, block=30)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.6)
        assert calls["fetch"] <= 2, f"an idle worker fetched {calls['fetch']} times in 0.6s"
        began = time.monotonic()
        await asyncio.wait_for(worker.close(grace=5), 8)
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - began < 2.0, "close waited for a blocked fetch"

    @pytest.mark.parametrize("method", ["fetch", "finish"])
    async def test_worker_rides_out_backend_errors(self, queue: Queue, method: str) -> None:
        job = await queue.add("x", 5)
        runs = Recorder()

        async def proc(j: Job) -> int:
            runs.add(j.id)
            return int(j.data) * 2

        faulty = cast(Backend, FaultyBackend(queue.backend, method, failures=1))
        worker = self.make_worker(Queue(queue.name, faulty), proc)
        errors, completed = Recorder(), Recorder()
        worker.on("error", errors.callback)
        worker.on("completed", completed.callback)
        async with self.running(worker):
            assert await job.wait(timeout=8) == 10
            await completed.wait_for(1)
        assert len(errors) >= 1 and all(isinstance(e, BackendError) for (e,) in errors.items)
        assert runs.items == [job.id] and len(completed) == 1
        done = await queue.require_job(job.id)
        assert (done.state, done.attempts_made) == ("completed", 1)

    async def test_completed_event_survives_a_lost_finish_reply(self, queue: Queue) -> None:
        job = await queue.add("x", 1)
        lossy = cast(Backend, LostReplyBackend(queue.backend))
        worker = self.make_worker(Queue(queue.name, lossy), lambda j: "done")
        completed = Recorder()
        worker.on("completed", completed.callback)
        await self.run_burst(worker)
        assert (await queue.require_job(job.id)).state == "completed"
        assert [(j.id, r) for j, r in completed.items] == [(job.id, "done")]

    async def test_release_hands_back_without_counting_an_attempt(
        self, queue: Queue, backend: Backend
    ) -> None:
        job = await queue.add("x", 1)
        other = await queue.add("y", 2)
        fetched = await backend.fetch(queue.name, "tok", 2, 5.0, 0)
        assert {r.id for r in fetched} == {job.id, other.id}
        assert await backend.release(queue.name, "other-token", None) == []
        assert await backend.release(queue.name, "tok", [job.id]) == [job.id]
        assert await self.state_of(queue, job.id) == "waiting"
        assert await self.state_of(queue, other.id) == "active"
        assert await backend.release(queue.name, "tok", None) == [other.id]
        counts = await queue.counts()
        assert (counts["active"], counts["waiting"]) == (0, 2)
        stored = await queue.require_job(job.id)
        assert stored.attempts_made == 0

    async def test_dead_workers_job_is_recovered_and_completed_once(
        self, queue: Queue, backend: Backend
    ) -> None:
        job = await queue.add("x", {"v": 1})
        grabbed = await backend.fetch(queue.name, DEAD, 1, 0.3, 0)
        assert [r.id for r in grabbed] == [job.id]
        assert await self.state_of(queue, job.id) == "active"
        runs = Recorder()

        async def proc(j: Job) -> str:
            runs.add(j.id)
            return "recovered"

        worker = self.make_worker(queue, proc, stalled_interval=0.1, lease=1.0)
        stalled, completed = Recorder(), Recorder()
        worker.on("stalled", stalled.callback)
        worker.on("completed", completed.callback)
        async with self.running(worker):
            await completed.wait_for(1)
            await asyncio.sleep(0.3)  # room for a wrong second run
        assert runs.items == [job.id]
        assert stalled.items == [(job.id, False)]
        done = await queue.require_job(job.id)
        assert (done.state, done.returnvalue, done.stalls) == ("completed", "recovered", 1)
        # the dead worker wakes up and reports: its result is refused, nothing changes
        late = Finish(job.id, "completed", 1, time.time(), returnvalue_json='"zombie"')
        result = await backend.finish(queue.name, DEAD, [late], 0, 1.0)
        assert result.lost == [job.id]
        again = await queue.require_job(job.id)
        assert (again.state, again.returnvalue) == ("completed", "recovered")

    async def test_a_worker_whose_lease_was_taken_over_reports_lost(self, queue: Queue) -> None:
        job = await queue.add("x", None)
        a_started, a_ended = Recorder(), Recorder()

        async def slow_a(j: Job) -> str:
            a_started.add(j.id)
            await asyncio.sleep(0.8)
            a_ended.add(j.id)
            return "from A"

        cut_off = cast(Backend, NoRenewalBackend(queue.backend, Counter()))
        worker_a = self.make_worker(Queue(queue.name, cut_off), slow_a, lease=0.3)
        worker_b = self.make_worker(queue, lambda j: "from B", stalled_interval=0.1)
        a_completed, a_errors, b_completed = Recorder(), Recorder(), Recorder()
        worker_a.on("completed", a_completed.callback)
        worker_a.on("error", a_errors.callback)
        worker_b.on("completed", b_completed.callback)
        async with self.running(worker_a):
            await a_started.wait_for(1)
            async with self.running(worker_b):
                await b_completed.wait_for(1)
                await a_ended.wait_for(1)
        # worker A is closed: its finish was sent and refused
        assert len(a_completed) == 0, "a worker announced a job another worker completed"
        assert len(a_errors) >= 1
        done = await queue.require_job(job.id)
        assert (done.state, done.returnvalue, done.stalls) == ("completed", "from B", 1)

    async def test_job_fails_after_max_stalls(self, queue: Queue, backend: Backend) -> None:
        job = await queue.add("x", None)
        assert len(await backend.fetch(queue.name, DEAD, 1, 0.1, 0)) == 1
        assert await backend.recover_stalled(queue.name, 1) == []  # lease not yet expired
        await asyncio.sleep(0.15)
        first = await backend.recover_stalled(queue.name, 1)
        assert [(s.job_id, s.failed) for s in first] == [(job.id, False)]
        back = await queue.require_job(job.id)
        assert (back.state, back.stalls) == ("waiting", 1)
        assert len(await backend.fetch(queue.name, DEAD, 1, 0.1, 0)) == 1
        await asyncio.sleep(0.15)
        second = await backend.recover_stalled(queue.name, 1)
        assert [(s.job_id, s.failed) for s in second] == [(job.id, True)]
        failed = await queue.require_job(job.id)
        assert failed.state == "failed" and failed.failed_reason
        assert "stall" in failed.failed_reason
        counts = await queue.counts()
        assert (counts["active"], counts["waiting"], counts["failed"]) == (0, 0, 1)

    async def test_worker_fails_a_job_past_max_stalls(self, queue: Queue, backend: Backend) -> None:
        job = await queue.add("x", None)
        await backend.fetch(queue.name, DEAD, 1, 0.2, 0)
        runs = Recorder()
        worker = self.make_worker(queue, runs.callback, stalled_interval=0.1, max_stalls=0)
        stalled = Recorder()
        worker.on("stalled", stalled.callback)
        async with self.running(worker):
            await stalled.wait_for(1)
        assert stalled.items == [(job.id, True)]
        assert len(runs) == 0
        assert await self.state_of(queue, job.id) == "failed"

    async def test_leases_are_renewed_while_a_job_runs(self, queue: Queue) -> None:
        runs = Recorder()

        async def slow(job: Job) -> str:
            runs.add(job.id)
            await asyncio.sleep(0.8)
            return "ok"

        job = await queue.add("x", None)
        owner = self.make_worker(queue, slow, lease=0.3, stalled_interval=0.1)
        sweeper = self.make_worker(queue, slow, lease=0.3, stalled_interval=0.1)
        stalled = Recorder()
        owner.on("stalled", stalled.callback)
        sweeper.on("stalled", stalled.callback)
        async with self.running(owner), self.running(sweeper):
            await job.wait(timeout=5)
        assert runs.items == [job.id]
        assert stalled.items == []

    async def test_extend_reports_jobs_not_owned(self, queue: Queue, backend: Backend) -> None:
        job = await queue.add("x", None)
        await backend.fetch(queue.name, "tok", 1, 0.2, 0)
        assert await backend.extend(queue.name, "tok", [job.id], 5.0) == []
        assert await backend.extend(queue.name, "thief", [job.id], 5.0) == [job.id]
        assert await backend.extend(queue.name, "tok", ["no-such-job"], 5.0) == ["no-such-job"]
        await asyncio.sleep(0.3)  # past the first lease, within the renewed one
        assert await backend.recover_stalled(queue.name, 1) == []
        assert await self.state_of(queue, job.id) == "active"

    async def test_finish_by_another_token_is_lost(self, queue: Queue, backend: Backend) -> None:
        job = await queue.add("x", None)
        await backend.fetch(queue.name, "owner", 1, 5.0, 0)
        fin = Finish(job.id, "completed", 1, time.time(), returnvalue_json="1")
        result = await backend.finish(queue.name, "intruder", [fin], 0, 5.0)
        assert result.lost == [job.id] and result.jobs == []
        assert await self.state_of(queue, job.id) == "active"
        result = await backend.finish(queue.name, "owner", [fin], 0, 5.0)
        assert result.lost == []
        assert await self.state_of(queue, job.id) == "completed"

    async def test_one_finish_ends_a_mixed_batch(self, queue: Queue, backend: Backend) -> None:
        """One finish call holding every kind of end, each applied as if it came alone."""
        jobs = await queue.add_bulk([("x", i) for i in range(6)])
        ids = [j.id for j in jobs]
        assert [r.id for r in await backend.fetch(queue.name, "tok", 4, 5.0, 0)] == ids[:4]
        assert [r.id for r in await backend.fetch(queue.name, "other", 1, 5.0, 0)] == [ids[4]]
        now = time.time()
        batch = [
            Finish(ids[0], "completed", 1, now, returnvalue_json='"done"'),
            Finish(ids[1], "failed", 1, now, failed_reason="bad", stacktrace="trace"),
            Finish(ids[2], "retry", 1, now, failed_reason="again", retry_at=now + 60),
            Finish(ids[3], "completed", 1, now, returnvalue_json="1", keep=Keep(count=0)),
            Finish(ids[4], "completed", 1, now, returnvalue_json="2"),  # owned by "other"
            Finish(ids[0], "completed", 1, now, returnvalue_json='"twice"'),  # already ended
        ]
        result = await backend.finish(queue.name, "tok", batch, 3, 5.0)
        assert sorted(result.lost) == sorted([ids[4], ids[0]])
        assert [r.id for r in result.jobs] == [ids[5]]
        done = await backend.get_job(queue.name, ids[0])
        assert done is not None and done.state == "completed" and done.returnvalue == "done"
        assert done.worker is None and done.finished_on == now
        failed = await backend.get_job(queue.name, ids[1])
        assert failed is not None and failed.state == "failed"
        assert (failed.failed_reason, failed.stacktrace) == ("bad", "trace")
        retried = await backend.get_job(queue.name, ids[2])
        assert retried is not None and retried.state == "delayed"
        assert await backend.get_job(queue.name, ids[3]) is None
        assert await self.state_of(queue, ids[4]) == "active"
        assert [j.id for j in await queue.jobs("completed")] == [ids[0]]

    async def test_finish_fetches_the_next_jobs(self, queue: Queue, backend: Backend) -> None:
        first = await queue.add("x", 1)
        await backend.fetch(queue.name, "tok", 1, 5.0, 0)
        second = await queue.add("x", 2)
        third = await queue.add("x", 3)
        fin = Finish(first.id, "completed", 1, time.time(), returnvalue_json="null")
        result = await backend.finish(queue.name, "tok", [fin], 2, 5.0)
        assert [r.id for r in result.jobs] == [second.id, third.id]
        assert all(r.state == "active" for r in result.jobs)
        assert (await queue.counts())["active"] == 2

    async def test_registry_drops_a_worker_without_heartbeats(
        self, queue: Queue, backend: Backend
    ) -> None:
        info = WorkerInfo("gone-1", queue.name, "host", 1, 2, started=time.time())
        await backend.heartbeat(info, ttl=30)
        assert [w.id for w in await queue.workers()] == ["gone-1"]
        # the last heartbeat's ttl is the one that counts; no more come, so it drops out
        # (waited for, not slept: a loaded machine can take longer than 0.3 s between calls)
        began = time.monotonic()
        await backend.heartbeat(info, ttl=0.3)

        async def gone() -> bool:
            return await queue.workers() == []

        await wait_until(gone, what="a worker without heartbeats dropped")
        assert time.monotonic() - began >= 0.25, "dropped before its ttl ran out"
        await backend.heartbeat(info, ttl=5)
        await backend.unregister(queue.name, "gone-1")
        assert await queue.workers() == []

    async def test_worker_registry(self, queue: Queue) -> None:
        worker = self.make_worker(queue, lambda j: None, concurrency=3, heartbeat_interval=0.1)
        async with self.running(worker):
            # a loaded machine may miss a 0.1 s heartbeat's ttl: the entry can blink out
            seen: list[WorkerInfo] = []

            async def registered() -> bool:
                seen[:] = [w for w in await queue.workers() if w.id == worker.id]
                return bool(seen)

            await wait_until(registered, what="worker in registry")
            info = seen[0]
            assert info.queue == queue.name and info.concurrency == 3
            assert abs(info.last_seen - time.time()) < 5

            async def fetched() -> bool:  # its fetch loop's last success travels with it
                found = [w for w in await queue.workers() if w.id == worker.id]
                return bool(found) and abs(found[0].fetched - time.time()) < 5

            await wait_until(fetched, what="the worker's last fetch in the registry")
        assert all(w.id != worker.id for w in await queue.workers())

    async def test_registry_keeps_the_last_fetch(self, queue: Queue, backend: Backend) -> None:
        info = WorkerInfo("f-1", queue.name, "host", 1, 2, started=time.time(), fetched=12345.5)
        await backend.heartbeat(info, ttl=5)
        assert [(w.id, w.fetched) for w in await queue.workers()] == [("f-1", 12345.5)]
        await backend.unregister(queue.name, "f-1")
