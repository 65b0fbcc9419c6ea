"""The base class of the contract suite: its fixtures and the helpers every test module uses.

Everything here waits with a bound: a broken backend makes a test fail, never hang.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar
from uuid import uuid4

import pytest
import pytest_asyncio

from polyjobs.backend import CAP_SHARED, Backend
from polyjobs.job import Job
from polyjobs.plugins import open_backend
from polyjobs.queue import Queue
from polyjobs.worker import Worker

#: Worker options that keep the suite fast; each test may override any of them.
FAST_WORKER: dict[str, Any] = {
    "lease": 2.0,
    "stalled_interval": 0.5,
    "block": 0.2,
    "heartbeat_interval": 0.5,
    "schedule_refresh": 0.1,
}

#: The longest any single wait in the suite may take before the test fails.
WAIT = 10.0


class Recorder:
    """Collects values (from the event loop or from a worker thread) and lets a test await
    a number of them without sleeping."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)
        if _in_loop(self._loop):
            self._changed.set()
        else:
            self._loop.call_soon_threadsafe(self._changed.set)

    def callback(self, *args: Any) -> None:
        """Use as a worker event listener: records the event's arguments as a tuple."""
        self.add(args)

    async def wait_for(self, count: int, timeout: float = WAIT) -> list[Any]:
        """Wait until at least ``count`` items were recorded; return them."""

        async def until() -> None:
            while len(self.items) < count:
                self._changed.clear()
                if len(self.items) >= count:
                    return
                await self._changed.wait()

        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"expected {count} recorded items within {timeout}s, got {len(self.items)}: "
                f"{self.items!r}"
            ) from None
        return list(self.items)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class LoopStalls:
    """The longest time this event loop was held up beyond a 10 ms tick while watched: a
    machine too loaded to run the process for a while (or a blocking call) shows here, so a
    bound on lateness can allow for the stall it saw and nothing more."""

    TICK = 0.01

    def __init__(self) -> None:
        self.longest = 0.0

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[LoopStalls]:
        async def tick() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(self.TICK)
                self.longest = max(self.longest, time.monotonic() - before - self.TICK)

        task = asyncio.create_task(tick())
        try:
            yield self
        finally:
            task.cancel()


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = WAIT, what: str = "condition"
) -> None:
    """Poll ``predicate`` (a backend read) until it holds; for states no event announces."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(0.02)


class ContractBase:
    """Fixtures and helpers shared by every part of the contract suite.

    Subclasses set ``url``; they may override the ``backend`` fixture (e.g. to start a
    server) and :meth:`open_other` (a second, independent connection to the same storage).
    """

    url: ClassVar[str] = ""

    @pytest_asyncio.fixture
    async def backend(self, *_args: Any, **_kwargs: Any) -> AsyncIterator[Backend]:
        # ``*_args, **_kwargs`` (which pytest ignores) let an override ask for any fixtures
        # of its own, e.g. ``async def backend(self, tmp_path)``, and still type-check.
        if not self.url:
            pytest.fail(f"{type(self).__name__} must set `url` or override the backend fixture")
        async with open_backend(self.url) as b:
            yield b

    @pytest_asyncio.fixture
    async def queue_name(self, backend: Backend) -> AsyncIterator[str]:
        name = f"contract-{uuid4().hex[:10]}"
        yield name
        await backend.obliterate(name)

    @pytest_asyncio.fixture
    async def queue(self, backend: Backend, queue_name: str) -> Queue:
        return Queue(queue_name, backend)

    def open_other(self) -> AbstractAsyncContextManager[Backend]:
        """A second connection to the storage of ``backend`` (capability ``shared``)."""
        return open_backend(self.url)

    @asynccontextmanager
    async def other_connection(self, backend: Backend) -> AsyncIterator[Backend]:
        """Another connection to ``backend``'s storage, as another process would have, when
        the backend is shared; ``backend`` itself otherwise."""
        if CAP_SHARED not in backend.capabilities:
            yield backend
            return
        async with self.open_other() as other:
            yield other

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def require(backend: Backend, capability: str) -> None:
        """Skip the running test unless ``backend`` declares ``capability``."""
        if capability not in backend.capabilities:
            pytest.skip(f"backend does not declare capability {capability!r}")

    @staticmethod
    def make_worker(queue: Queue, processor: Callable[[Job], Any], **options: Any) -> Worker:
        return Worker(queue.name, processor, queue.backend, **{**FAST_WORKER, **options})

    async def burst(
        self, queue: Queue, processor: Callable[[Job], Any], within: float = WAIT, **options: Any
    ) -> Worker:
        """Run a new worker (``options`` are Worker options) until the queue has nothing left
        to do; fail the test after ``within`` seconds."""
        return await self.run_burst(self.make_worker(queue, processor, **options), within)

    @staticmethod
    async def run_burst(worker: Worker, timeout: float = WAIT) -> Worker:
        """Run ``worker`` until its queue has nothing left to do (bounded)."""
        try:
            await asyncio.wait_for(worker.run(burst=True), timeout)
        except TimeoutError:
            raise AssertionError(f"burst worker did not finish within {timeout}s") from None
        return worker

    @staticmethod
    @asynccontextmanager
    async def running(worker: Worker, grace: float = 5.0) -> AsyncIterator[Worker]:
        """Run ``worker`` in the background for the block; close it (bounded) on exit."""
        task = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            try:
                await asyncio.wait_for(worker.close(grace), grace + 5.0)
                await asyncio.wait_for(task, 5.0)
            finally:
                if not task.done():
                    task.cancel()

    @staticmethod
    async def state_of(queue: Queue, job_id: str) -> str | None:
        job = await queue.get_job(job_id)
        return None if job is None else job.state


async def noop(job: Job) -> Any:
    """A processor that returns the job's data."""
    return job.data
