"""A worker's concurrency slots (memory backend): a slot is in use from a job's start until
its result is sent, never more than ``concurrency`` at once, and every slot is given back
however the job ended (completed, failed, timed out, cancelled at close, a failed finish call).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from polyjobs import Job, Queue, Worker, open_backend
from polyjobs.backend import Backend
from polyjobs.worker import Slots


async def _until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def _all_given_back(worker: Worker) -> None:
    slots = worker.slots
    assert (slots.in_use, slots.reserved, slots.free) == (0, 0, slots.size), slots


async def test_slot_arithmetic_and_wake_up() -> None:
    slots = Slots(4)
    assert (slots.free, slots.in_use, slots.reserved) == (4, 0, 0)
    slots.acquire()
    slots.acquire(2)
    slots.reserve(1)
    assert (slots.free, slots.in_use, slots.reserved) == (0, 3, 1)
    slots.release(2)
    slots.unreserve(1)
    assert (slots.free, slots.in_use) == (3, 1)
    waiter = asyncio.create_task(slots.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    slots.notify()
    await asyncio.wait_for(waiter, 1)


async def test_no_more_jobs_run_than_slots_and_all_come_back() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-busy", backend)
        for i in range(7):
            await queue.add("j", i)
        gate = asyncio.Event()
        running = 0
        most = 0

        async def held(job: Job) -> int:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await gate.wait()
            running -= 1
            return int(job.data)

        worker = Worker(queue.name, held, backend, concurrency=3, block=0.1, schedule=False)
        assert worker.slots.free == 3  # before it runs: an empty set of slots
        task = asyncio.create_task(worker.run(burst=True))
        await _until(lambda: worker.active_jobs == 3, "three jobs should start")
        await asyncio.sleep(0.1)  # the fetch loop had time to take more: it must not
        assert (worker.slots.in_use, worker.slots.free, worker.active_jobs) == (3, 0, 3)
        assert (await queue.counts())["active"] == 3
        gate.set()
        await asyncio.wait_for(task, 10)
        assert most == 3
        assert (await queue.counts())["completed"] == 7
        _all_given_back(worker)


async def test_failed_and_timed_out_jobs_give_their_slots_back() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-outcomes", backend)
        for kind in ("ok", "fail", "slow", "ok", "fail", "slow"):
            await queue.add(kind, kind, timeout=0.05)

        async def mixed(job: Job) -> str:
            if job.data == "fail":
                raise ValueError("no")
            if job.data == "slow":
                await asyncio.sleep(5)
            return "done"

        worker = Worker(queue.name, mixed, backend, concurrency=2, block=0.1, schedule=False)
        await asyncio.wait_for(worker.run(burst=True), 10)
        counts = await queue.counts()
        assert (counts["completed"], counts["failed"]) == (2, 4)
        _all_given_back(worker)


async def test_jobs_cancelled_at_close_give_their_slots_back() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-close", backend)
        for i in range(3):
            await queue.add("j", i)

        async def forever(job: Job) -> None:
            await asyncio.sleep(60)

        worker = Worker(queue.name, forever, backend, concurrency=2, block=0.1, schedule=False)
        task = asyncio.create_task(worker.run())
        await _until(lambda: worker.active_jobs == 2, "two jobs should start")
        await worker.close(grace=0.05)
        await task
        _all_given_back(worker)
        assert (await queue.counts())["waiting"] == 3  # handed back, none left active


class _FinishFailsOnce:
    """The memory backend, except that its first finish call fails before reaching it."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def finish(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed += 1
            raise ConnectionError("finish refused once")
        return await self._backend.finish(*args, **kwargs)


async def test_a_failed_finish_keeps_the_slots_until_it_is_sent_again() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-finish-fails", backend)
        for i in range(6):
            await queue.add("j", i)
        running = 0
        most = 0

        async def quick(job: Job) -> int:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1
            return int(job.data)

        flaky = _FinishFailsOnce(backend)
        worker = Worker(queue.name, quick, flaky, concurrency=2, block=0.1, schedule=False)
        await asyncio.wait_for(worker.run(burst=True), 10)
        assert flaky.failed == 1
        assert most <= 2
        assert (await queue.counts())["completed"] == 6
        _all_given_back(worker)


class _Recorded:
    """The memory backend, recording every fetch and finish call in ``events`` when made; its
    worker keeps two finish calls in flight, as on Redis."""

    finish_calls_in_flight = 2

    def __init__(self, backend: Backend, events: list[str]) -> None:
        self._backend = backend
        self.events = events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        self.events.append("fetch")
        return await self._backend.fetch(*args, **kwargs)

    async def finish(self, queue: str, token: str, finishes: Any, fetch: int, lease: float) -> Any:
        self.events.append(f"finish {len(finishes)}, fetch {fetch}")
        return await self._backend.finish(queue, token, finishes, fetch, lease)


async def test_fetched_jobs_start_before_the_next_fetch_goes_out() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-start-first", backend)
        await queue.add("j", 1)
        events: list[str] = []
        started = asyncio.Event()

        async def held(job: Job) -> None:
            events.append("start")
            started.set()
            await asyncio.sleep(60)

        recorded = _Recorded(backend, events)
        worker = Worker(queue.name, held, recorded, concurrency=2, block=0.05, schedule=False)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 10)
        await _until(lambda: events.count("fetch") >= 2, "the worker should fetch again")
        await worker.close(grace=0)
        await task
        # the job taken by the first fetch ran before the fetch for the free slot was made
        assert events[:3] == ["fetch", "start", "fetch"], events
        _all_given_back(worker)


async def test_jobs_that_end_at_once_go_back_in_two_calls_each_refilling_its_slots() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-one-round", backend)
        for i in range(12):
            await queue.add("j", i)
        events: list[str] = []

        async def quick(job: Job) -> int:
            return int(job.data)

        recorded = _Recorded(backend, events)
        worker = Worker(queue.name, quick, recorded, concurrency=4, block=0.05, schedule=False)
        await asyncio.wait_for(worker.run(burst=True), 10)
        finishes = [e for e in events if e.startswith("finish")]
        # four jobs end at once: two calls of two (half the slots each), each handing back its
        # jobs and taking the next two, the fetch loop staying out of it while no slot is free
        assert finishes[:4] == ["finish 2, fetch 2"] * 4, events
        assert events[0] == "fetch" and events.count("fetch") <= 2, events
        assert (await queue.counts())["completed"] == 12
        _all_given_back(worker)


class _SlowFinish:
    """The memory backend, its finish calls served one after another (as Redis serves the
    scripts of one connection), each taking ``delay`` s, two of them in flight at most (as
    on Redis); counts the calls in flight."""

    finish_calls_in_flight = 2

    def __init__(self, backend: Backend, delay: float) -> None:
        self._backend = backend
        self.delay = delay
        self.server = asyncio.Lock()
        self.in_flight = 0
        self.most = 0
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def finish(self, queue: str, token: str, finishes: Any, fetch: int, lease: float) -> Any:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.sizes.append(len(finishes))
        try:
            async with self.server:
                await asyncio.sleep(self.delay)
                return await self._backend.finish(queue, token, finishes, fetch, lease)
        finally:
            self.in_flight -= 1


async def test_jobs_run_while_the_other_finish_call_is_in_flight() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-two-calls", backend)
        for i in range(40):
            await queue.add("j", i)
        ran_while_finishing = 0
        slow = _SlowFinish(backend, 0.05)  # wide: a loaded machine still runs the jobs meanwhile

        async def quick(job: Job) -> int:
            nonlocal ran_while_finishing
            ran_while_finishing += slow.in_flight > 0
            return int(job.data)

        worker = Worker(queue.name, quick, slow, concurrency=10, block=0.05, schedule=False)
        await asyncio.wait_for(worker.run(burst=True), 10)
        assert slow.most == 2, slow.most  # never more than two, and two do overlap
        assert max(slow.sizes) <= 5, slow.sizes  # at most half the slots per call
        # the jobs a call brought ran while the other call was still in flight
        assert ran_while_finishing >= 20, ran_while_finishing
        assert (await queue.counts())["completed"] == 40
        _all_given_back(worker)


async def _quick_burst(
    name: str, jobs: int, concurrency: int, finish: type[_SlowFinish]
) -> tuple[_SlowFinish, int, Worker]:
    """``jobs`` quick jobs run in burst through ``finish`` (10 ms finish calls): the backend
    wrapper, the number completed, and the worker."""
    async with open_backend("memory://") as backend:
        queue = Queue(name, backend)
        for i in range(jobs):
            await queue.add("j", i)
        slow = finish(backend, 0.01)

        async def quick(job: Job) -> int:
            return int(job.data)

        worker = Worker(name, quick, slow, concurrency=concurrency, block=0.05, schedule=False)
        await asyncio.wait_for(worker.run(burst=True), 10)
        return slow, (await queue.counts())["completed"], worker


async def test_one_slot_keeps_one_finish_call_in_flight() -> None:
    slow, completed, worker = await _quick_burst("slots-one-call", 6, 1, _SlowFinish)
    assert slow.most == 1 and set(slow.sizes) == {1}, (slow.most, slow.sizes)
    assert completed == 6
    _all_given_back(worker)


class _SerialFinish(_SlowFinish):
    """As :class:`_SlowFinish`, on a backend that does not ask for calls in flight together."""

    finish_calls_in_flight = 1


async def test_a_backend_that_does_not_ask_for_it_gets_one_finish_call_at_a_time() -> None:
    slow, completed, worker = await _quick_burst("slots-serial-backend", 30, 10, _SerialFinish)
    assert slow.most == 1, slow.most
    assert max(slow.sizes) == 10, slow.sizes  # every slot's result in one call
    assert completed == 30
    _all_given_back(worker)


class _FinishFailsThrice(_SlowFinish):
    """Its first three finish calls fail (after ``delay``); records the calls' overlaps."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend, 0.01)
        self.failures = 0
        self.after_failure: list[int] = []  # calls in flight at the start of each later call

    async def finish(self, queue: str, token: str, finishes: Any, fetch: int, lease: float) -> Any:
        if self.failures:
            self.after_failure.append(self.in_flight)
        if self.failures < 3:
            self.in_flight += 1
            try:
                await asyncio.sleep(self.delay)
                self.failures += 1
                raise ConnectionError("finish refused")
            finally:
                self.in_flight -= 1
        return await super().finish(queue, token, finishes, fetch, lease)


async def test_failed_finish_calls_are_retried_one_at_a_time_and_lose_nothing() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-finish-outage", backend)
        for i in range(8):
            await queue.add("j", i)

        async def quick(job: Job) -> int:
            return int(job.data)

        flaky = _FinishFailsThrice(backend)
        worker = Worker(queue.name, quick, flaky, concurrency=4, block=0.05, schedule=False)
        await asyncio.wait_for(worker.run(burst=True), 20)
        assert flaky.failures == 3
        # once a call has failed, the next goes out alone, after the pause: no burst of retries
        assert flaky.after_failure and flaky.after_failure[0] == 0, flaky.after_failure
        counts = await queue.counts()
        assert counts["completed"] == 8 and counts["active"] == 0, counts
        _all_given_back(worker)


class _LostReplyOnce:
    """The memory backend; its third finish call is applied, then its reply "lost" (it raises),
    so the worker sends that batch again, is told its jobs are no longer owned and looks them up
    (slowly) to find them applied. Two finish calls may be in flight, as on Redis."""

    finish_calls_in_flight = 2

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.calls = 0
        self.looking = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def finish(self, queue: str, token: str, finishes: Any, fetch: int, lease: float) -> Any:
        self.calls += 1
        lost_reply = self.calls == 3
        result = await self._backend.finish(
            queue, token, finishes, 0 if lost_reply else fetch, lease
        )
        await asyncio.sleep(0.005)
        if lost_reply:
            self.looking = True
            raise ConnectionError("reply lost")
        return result

    async def get_job(self, queue: str, job_id: str) -> Any:
        if self.looking:
            await asyncio.sleep(0.3)  # meanwhile the other call could take the same slots
        return await self._backend.get_job(queue, job_id)


async def test_a_resent_finish_found_applied_does_not_overfill_the_slots() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-resent-applied", backend)
        for i in range(60):
            await queue.add("j", i)
        running = most = 0

        async def slow(job: Job) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.1)
            running -= 1

        lossy = _LostReplyOnce(backend)
        worker = Worker(queue.name, slow, lossy, concurrency=4, block=0.05, schedule=False)
        await asyncio.wait_for(worker.run(burst=True), 20)
        assert lossy.looking  # the lost reply's batch was sent again and looked up
        assert most <= 4, most
        counts = await queue.counts()
        assert counts["completed"] == 60 and counts["active"] == 0, counts
        _all_given_back(worker)


async def test_a_finish_call_cancelled_before_it_ran_gives_its_share_back() -> None:
    from polyjobs.worker import _Held, _Run

    run = _Run(Slots(4))
    run.slots.reserve(3)
    run.finishing += 1
    held = _Held(run, 3)

    async def never_runs() -> None:
        raise AssertionError("cancelled before its first step")

    call = asyncio.get_running_loop().create_task(never_runs())
    call.add_done_callback(held.settle)
    call.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert call.cancelled()
    assert (run.finishing, run.slots.reserved, run.slots.free) == (0, 0, 4)
    held.settle()  # given back once only
    assert (run.finishing, run.slots.reserved) == (0, 0)


class _HungFinish:
    """The memory backend, except that every finish call hangs (a backend that stopped
    answering); two may be in flight, as on Redis."""

    finish_calls_in_flight = 2

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.in_flight = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def finish(self, *args: Any, **kwargs: Any) -> Any:
        self.in_flight += 1
        await asyncio.Event().wait()


async def test_close_with_two_hung_finish_calls_returns_and_hands_the_jobs_back() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("slots-hung-finish", backend)
        for i in range(8):
            await queue.add("j", i)

        async def quick(job: Job) -> int:
            return int(job.data)

        hung = _HungFinish(backend)
        worker = Worker(queue.name, quick, hung, concurrency=4, block=0.05, schedule=False)
        task = asyncio.create_task(worker.run())
        await _until(lambda: hung.in_flight == 2, "two finish calls should be in flight")
        started = time.monotonic()
        await asyncio.wait_for(worker.close(grace=0.1), 10)
        await task
        # bounded by the shutdown's wait for calls in flight (2 s), not by the hung backend
        assert time.monotonic() - started < 5
        _all_given_back(worker)
        assert not worker.busy
        counts = await queue.counts()
        assert counts["waiting"] == 8 and counts["active"] == 0, counts  # the 4 handed back
