"""``Worker``: runs a processor over the jobs of one queue.

A worker is one ``TaskGroup``: a fetch loop, up to ``concurrency`` job tasks, a finish loop
(which hands results to the backend in batches and takes the next jobs in the same call; on
Redis two such calls may be in flight, so jobs run while the backend serves the other), a
lease keeper (one call renews every lease), a stalled-job sweeper, a heartbeat and, by default,
the queue's scheduler. Closing stops fetching, lets active jobs finish within a grace period,
then cancels the rest and hands their jobs back so that none stays ``active``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from polyjobs.backend import (
    CAP_CANCEL,
    CAP_GROUPS,
    CAP_RATE_LIMIT,
    Finish,
    JobRecord,
    WorkerInfo,
    canceller,
    groups_of,
    rate_limiter,
)
from polyjobs.errors import (
    GroupRateLimitError,
    InvalidArgumentError,
    JobTimeoutError,
    RateLimitError,
    RetryAfter,
)
from polyjobs.job import Job
from polyjobs.options import JobOptions, seconds
from polyjobs.outage import OUTAGES
from polyjobs.outcomes import applied_before, completed, failure
from polyjobs.queue import check_queue_name
from polyjobs.sandbox import SandboxPool, processor_ref
from polyjobs.scheduling import Scheduler
from polyjobs.telemetry import TRACE_KEY
from polyjobs.worker_options import WorkerOptions

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from polyjobs.backend import Backend
    from polyjobs.telemetry import Telemetry


class JobEventSink(Protocol):
    """What a worker tells its plugins (``PluginHost`` is one): every job event."""

    def job_event(
        self, queue: str, event: str, job_id: str, payload: Mapping[str, Any]
    ) -> None: ...


__all__ = ["EVENTS", "Processor", "Worker", "WorkerOptions"]

log = logging.getLogger(__name__)

Processor = Callable[[Job], Any]
EVENTS = ("completed", "failed", "retrying", "progress", "stalled", "error", "cancelled")
SHUTDOWN_CALL_TIMEOUT = 2.0


class Slots:
    """The worker's ``concurrency`` slots.

    A slot is *in use* from the moment its job starts until its result is handed to the
    backend (the finish call that takes the result refills the slot with the next job), and
    *reserved* while a fetch, or a finish that fetches, may fill it. The fetch loop asks for
    :attr:`free` slots and waits (:meth:`wait`) when there are none; :meth:`notify` wakes it.
    """

    __slots__ = ("_freed", "in_use", "reserved", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_use = 0  # jobs running or whose result waits to be sent
        self.reserved = 0  # held by a fetch (or a finish that fetches) in flight
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        """Slots neither processing, nor waiting for their finish, nor held by a fetch."""
        return self.size - self.in_use - self.reserved

    def acquire(self, n: int = 1) -> None:
        """``n`` jobs start (or their results wait to be sent again)."""
        self.in_use += n

    def release(self, n: int = 1) -> None:
        """``n`` slots are given up: their results are on their way, or their jobs stopped."""
        self.in_use -= n

    def reserve(self, n: int) -> None:
        """Hold ``n`` free slots for a call that may fill them; :meth:`unreserve` after it."""
        self.reserved += n

    def unreserve(self, n: int) -> None:
        self.reserved -= n

    def notify(self) -> None:
        """Wake the fetch loop: slots may be free (or the worker is stopping)."""
        self._freed.set()

    async def wait(self) -> None:
        """Wait for the next :meth:`notify`."""
        self._freed.clear()
        await self._freed.wait()

    def __repr__(self) -> str:
        return f"<Slots {self.in_use} in use, {self.reserved} reserved, of {self.size}>"


@dataclass(slots=True, eq=False)
class _Run:
    """Everything one :meth:`Worker.run` keeps: a fresh one at the start of ``run()`` (the
    one a worker holds before it runs is empty and never started)."""

    slots: Slots
    tg: asyncio.TaskGroup = field(default_factory=asyncio.TaskGroup)
    started: float = 0.0
    fetched: float = 0.0  # when a fetch (or a finish that fetches) last succeeded
    owned: set[str] = field(default_factory=set)  # fetched, not yet acknowledged by finish
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)  # the Job of each running task
    cancels: dict[str, str] = field(default_factory=dict)  # job id -> reason, being cancelled
    outbox: list[tuple[Finish, Job, Any]] = field(default_factory=list)
    finishing: int = 0  # finish calls in flight
    finish_calls: set[asyncio.Task[None]] = field(default_factory=set)  # those of them in tasks
    finish_failures: int = 0  # finish calls failed in a row (the pause after one grows)
    finish_pausing: int = 0  # failed calls pausing before their retry: none is sent meanwhile
    finish_gave_up: bool = False  # past the grace period, the backend kept failing
    resent: set[str] = field(default_factory=set)  # sent again after a failed call: maybe applied
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # stop taking jobs
    force: asyncio.Event = field(default_factory=asyncio.Event)  # stop waiting for jobs
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # the loops end
    exited: asyncio.Event = field(default_factory=asyncio.Event)  # run() has returned
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)
    round_done: asyncio.Event = field(default_factory=asyncio.Event)  # a finish call ended
    grace: float = 30.0
    grace_over: bool = False
    fetch_task: asyncio.Task[None] | None = None
    finish_task: asyncio.Task[None] | None = None
    aux_tasks: list[asyncio.Task[None]] = field(default_factory=list)  # cancelled at shutdown
    sandbox: SandboxPool | None = None
    threads: ThreadPoolExecutor | None = None
    loop: asyncio.AbstractEventLoop | None = None  # the loop run() runs on


@dataclass(slots=True, eq=False)
class _Held:
    """A finish call's share of its run's counters: its count in ``finishing`` and the slots
    it reserved for the jobs it fetches. Each is given back once: by the call itself, or,
    should its task be cancelled before it ever ran, when that task ends."""

    run: _Run
    reserved: int
    counted: bool = True

    def unreserve(self) -> None:
        if self.reserved:
            self.run.slots.unreserve(self.reserved)
            self.reserved = 0

    def uncount(self) -> None:
        if self.counted:
            self.run.finishing -= 1
            self.counted = False

    def settle(self, _task: object = None) -> None:
        self.unreserve()
        self.uncount()


class Worker:
    """Process the jobs of queue ``queue_name`` with ``processor``.

    ``processor`` is ``async def f(job)`` or a plain function (run in a thread); its return
    value (JSON) is stored as the job's result. Options are :class:`WorkerOptions` fields,
    given as keywords or as ``options=``. ``context`` is handed to processors as
    ``job.context``. ``telemetry`` (e.g. :class:`polyjobs.otel.OtelTelemetry`) puts each run
    in a span that continues the trace stored in the job.
    """

    def __init__(
        self,
        queue_name: str,
        processor: Processor,
        backend: Backend,
        *,
        options: WorkerOptions | None = None,
        context: Any = None,
        plugins: JobEventSink | None = None,
        telemetry: Telemetry | None = None,
        **overrides: Any,
    ) -> None:
        self.queue = check_queue_name(queue_name)
        if not callable(processor):
            raise InvalidArgumentError(f"processor for queue {queue_name!r} is not callable")
        self.processor = processor
        self._is_async = _is_coroutine_callable(processor)
        self._sandbox_ref: str | None = None
        self.backend = backend
        self.options = WorkerOptions.build(options, **overrides)
        if self.options.sandbox:
            if self._is_async:
                raise InvalidArgumentError(
                    f"sandbox=True runs plain functions; the processor of {queue_name!r} is async"
                )
            self._sandbox_ref = processor_ref(processor)
        self.context = context
        self.plugins = plugins
        self.telemetry = telemetry
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:10]}"
        self._listeners: dict[str, list[Callable[..., Any]]] = {e: [] for e in EVENTS}
        self._last_opts: tuple[dict[str, Any], dict[str, Any], JobOptions] | None = None
        self._state = "new"
        self._run = _Run(Slots(self.options.concurrency))

    def __repr__(self) -> str:
        return f"<Worker {self.queue} {self.id} {self._state}>"

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def active_jobs(self) -> int:
        """How many jobs this worker is processing right now."""
        return len(self._run.tasks)

    @property
    def busy(self) -> bool:
        """Whether jobs are being processed or their results are on their way to the backend."""
        run = self._run
        return bool(run.tasks or run.outbox or run.finishing)

    @property
    def slots(self) -> Slots:
        """This worker's concurrency slots (in use, reserved, free)."""
        return self._run.slots

    # -- events ----------------------------------------------------------------------------
    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback`` on an event (a plain function or a coroutine function):

        ``completed(job, result)``, ``failed(job, error)`` (no attempts left),
        ``retrying(job, error)``, ``progress(job, progress)``, ``stalled(job_id, failed)``,
        ``error(exception)``, ``cancelled(job, reason)`` (a running job was cancelled and
        failed with ``reason``; ``failed`` is heard too).
        """
        if event not in self._listeners:
            raise InvalidArgumentError(f"unknown worker event {event!r} (one of {EVENTS})")
        self._listeners[event].append(callback)

    def _emit(self, event: str, *args: Any) -> None:
        callbacks = self._listeners[event]
        if not callbacks:
            return
        for callback in callbacks:
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    self._run.tg.create_task(_guard(result, event))
            except Exception:
                log.exception("%s listener failed on queue %s", event, self.queue)

    def _hook(self, event: str, job_id: str, payload: dict[str, Any]) -> None:
        if self.plugins is not None:
            self.plugins.job_event(self.queue, event, job_id, payload)

    def _error(self, exc: BaseException, what: str) -> None:
        log.warning("worker %s on queue %s: %s: %s", self.id, self.queue, what, exc)
        self._emit("error", exc)

    def _failed(self, exc: BaseException, kind: str) -> None:
        """A backend call of loop ``kind`` failed: ``error`` listeners hear of every failure;
        the log says it once per outage (:mod:`polyjobs.outage`)."""
        if OUTAGES.failed(kind, exc, f"queue {self.queue}"):
            self._emit("error", exc)
        else:
            self._error(exc, f"{kind} failed")

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, burst: bool = False) -> None:
        """Process jobs until :meth:`close` (or, with ``burst``, until the queue has nothing
        waiting, active or delayed)."""
        if self._state == "closed":
            return  # closed before it ever ran
        if self._state != "new":
            raise InvalidArgumentError(f"worker {self.id} is already running")
        self._run = run = _Run(Slots(self.options.concurrency), started=time.time())
        run.loop = asyncio.get_running_loop()
        self._state = "running"
        if self._sandbox_ref is not None:
            run.sandbox = SandboxPool(
                self._sandbox_ref, self.options.concurrency, self.options.sandbox_max_jobs
            )
        try:
            async with run.tg as tg:
                run.fetch_task = tg.create_task(self._fetch_loop(burst))
                run.finish_task = tg.create_task(self._finish_loop())
                # best-effort loops: cancelled at shutdown, so a hung backend call in one of
                # them cannot hold close() past its bound
                run.aux_tasks = [
                    tg.create_task(self._lease_loop()),
                    tg.create_task(self._stalled_loop()),
                    tg.create_task(self._heartbeat_loop()),
                ]
                if CAP_CANCEL in self.backend.capabilities:
                    run.aux_tasks.append(tg.create_task(self._cancel_loop()))
                if self.options.schedule:
                    scheduler = Scheduler(self.queue, self.backend, self.options.schedule_refresh)
                    run.aux_tasks.append(tg.create_task(scheduler.run(run.stop)))
                tg.create_task(self._shutdown_when_closing())
        finally:
            if run.sandbox is not None:
                await run.sandbox.close()
            if run.threads is not None:
                # threads still running timed-out jobs cannot be stopped; don't wait for them
                run.threads.shutdown(wait=False, cancel_futures=True)
            await self._hand_back()
            self._state = "closed"
            run.exited.set()

    async def close(self, grace: float = 30.0) -> None:
        """Stop taking jobs, wait up to ``grace`` seconds for active ones, then cancel the
        rest and hand their jobs back. Returns within about ``grace`` + 2 s, even when the
        backend is unreachable."""
        self.request_close(grace)
        if self._state != "closed":
            await self._run.exited.wait()

    def request_close(self, grace: float = 30.0) -> None:
        """Start closing without waiting; a second request with ``grace=0`` forces."""
        if self._state == "new":
            self._state = "closed"
            return
        if self._state == "closed":
            return
        grace = seconds(grace, "grace")
        run = self._run
        if run.closing.is_set():
            if grace == 0:
                run.force.set()
            return
        run.grace = grace
        run.closing.set()

    async def _shutdown_when_closing(self) -> None:
        run = self._run
        await run.closing.wait()
        if run.fetch_task is not None:
            run.fetch_task.cancel()
        await self._wait_for_jobs(run.grace)
        run.grace_over = True
        for task in run.tasks.values():
            task.cancel()
        run.outbox_ready.set()
        deadline = time.monotonic() + SHUTDOWN_CALL_TIMEOUT
        while (run.outbox or run.finishing) and time.monotonic() < deadline:
            run.round_done.clear()
            try:
                await asyncio.wait_for(run.round_done.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        run.stop.set()
        run.outbox_ready.set()
        run.slots.notify()
        for task in run.aux_tasks:
            task.cancel()
        # a finish call that outlived its deadline: the backend hangs
        if run.finishing and run.finish_task is not None:
            run.finish_task.cancel()
            for call in list(run.finish_calls):
                call.cancel()

    async def _wait_for_jobs(self, grace: float) -> None:
        run = self._run
        deadline = time.monotonic() + grace
        while run.tasks and not run.force.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            force = asyncio.ensure_future(run.force.wait())
            await asyncio.wait(
                [*run.tasks.values(), force],
                timeout=remaining,
                return_when=asyncio.FIRST_COMPLETED,
            )
            force.cancel()

    async def _hand_back(self) -> None:
        """Release whatever this worker still owns and leave the registry (bounded in time)."""
        calls = (
            self.backend.release(self.queue, self.id, None),
            self.backend.unregister(self.queue, self.id),
        )
        results = await asyncio.gather(
            *(asyncio.wait_for(call, SHUTDOWN_CALL_TIMEOUT) for call in calls),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("worker %s: shutdown call failed: %r", self.id, result)
        self._run.owned.clear()

    # -- fetching --------------------------------------------------------------------------
    def _start(self, records: list[JobRecord]) -> None:
        run = self._run
        if run.closing.is_set():
            run.owned.update(record.id for record in records)  # handed back by _hand_back
            return
        create_task, tasks, process = run.tg.create_task, run.tasks, self._process
        for record in records:
            run.owned.add(record.id)
            run.slots.acquire()
            job = process(record)
            try:
                tasks[record.id] = create_task(job)
            except RuntimeError:  # the task group is closing (a cancellation lost below)
                job.close()  # it never runs: no "never awaited" warning
                raise

    async def _fetch_loop(self, burst: bool) -> None:
        run = self._run
        slots = run.slots
        failures = 0
        while not run.closing.is_set():
            free = slots.free
            if free <= 0:
                await slots.wait()
                await asyncio.sleep(0)  # let the finish loop take the slot first
                continue
            try:
                # after a failure, one look without waiting: the backend being back is known
                # (logged, and fetched for health) at once, not after up to `block` seconds
                block = 0.0 if burst or failures else self.options.block
                records = await self._fetch_reserved(free, block)
                run.fetched = time.time()
                if records:
                    self._start(records)
                    # the jobs start before the next fetch is built and sent
                    await asyncio.sleep(0)
                if burst and not records and await self._burst_idle():
                    run.closing.set()
                failures = 0
                OUTAGES.ok("fetch")
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # cancelled, and the cancellation lost below (Python 3.11's wait_for drops
                    # one that lands as its wait ends): stop, rather than fetch into a closing
                    # task group for ever
                    raise asyncio.CancelledError from exc
                failures += 1
                self._failed(exc, "fetch")
                await self._pause_after_failure(failures)

    async def _fetch_reserved(self, free: int, block: float) -> list[JobRecord]:
        """Fetch up to ``free`` jobs, holding those slots so no other fetch can take them."""
        slots = self._run.slots
        slots.reserve(free)
        try:
            return await self.backend.fetch(self.queue, self.id, free, self.options.lease, block)
        finally:
            slots.unreserve(free)

    async def _burst_idle(self) -> bool:
        """In burst mode: True once the queue has nothing to do; otherwise wait for progress."""
        run = self._run
        if run.tasks or run.outbox or run.finishing:
            run.round_done.clear()
            await run.round_done.wait()
            return False
        counts = await self.backend.counts(self.queue)
        paused = await self.backend.is_paused(self.queue)
        if counts["active"] == 0 and counts["delayed"] == 0 and (paused or counts["waiting"] == 0):
            return True
        free = run.slots.free
        if free > 0:
            self._start(await self._fetch_reserved(free, min(1.0, self.options.block)))
        return False

    async def _pause_after_failure(self, failures: int) -> None:
        try:
            await asyncio.wait_for(self._run.closing.wait(), min(0.1 * 2**failures, 5.0))
        except TimeoutError:
            pass

    # -- processing ------------------------------------------------------------------------
    async def _process(self, record: JobRecord) -> None:
        run = self._run
        job = Job(record, self.queue, self.backend, self.context)
        run.jobs[job.id] = job
        job._loop = run.loop
        job._on_progress = self._on_progress
        job.attempts_started = record.attempts_started
        opts = self._options_of(record)
        timeout = opts.timeout if opts.timeout is not None else self.options.timeout
        try:
            try:
                if timeout is None:
                    result = await self._call(job)
                else:
                    async with asyncio.timeout(timeout) as scope:
                        result = await self._call(job)
                fin = completed(job, opts, result)
                outcome: Any = result
            except TimeoutError as exc:
                if timeout is None or not scope.expired():
                    raise
                error = JobTimeoutError(f"job {job.id} timed out after {timeout:g}s")
                error.__cause__ = exc
                fin, outcome = failure(job, opts, error), error
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling() and job.id in run.cancels:
                task.uncancel()  # stopped because someone cancelled the job: it fails
                fin, outcome = self._cancelled(job, opts), exc
                if task.cancelling():  # closing too: hand the result over, then stop
                    run.jobs.pop(job.id, None)
                    run.tasks.pop(job.id, None)
                    run.outbox.append((fin, job, outcome))
                    run.outbox_ready.set()
                    raise
            elif task is not None and task.cancelling():
                run.jobs.pop(job.id, None)
                run.tasks.pop(job.id, None)
                run.slots.release()
                run.slots.notify()
                raise  # the worker cancelled this job (close after the grace period)
            else:
                # raised by the processor itself (e.g. leaked by a library): a failure like any
                fin, outcome = failure(job, opts, exc), exc
        except RateLimitError as exc:
            fin, outcome = await self._held_back(job, opts, exc), exc
        except Exception as exc:
            fin, outcome = failure(job, opts, exc), exc
        if job.id in run.cancels:
            # however it ended once told (a thread processor that saw job.cancelled, an async
            # one that swallowed the CancelledError): it fails with the reason, no retry
            fin = self._cancelled(job, opts)
        run.jobs.pop(job.id, None)
        run.tasks.pop(job.id, None)
        run.outbox.append((fin, job, outcome))  # the slot stays in use until it is sent
        run.outbox_ready.set()

    async def _held_back(self, job: Job, opts: JobOptions, exc: RateLimitError) -> Finish:
        """:meth:`_rate_limited`, unless the job is cancelled meanwhile: then it fails."""
        try:
            return await self._rate_limited(job, opts, exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or job.id not in self._run.cancels or task.cancelling() > 1:
                raise
            task.uncancel()
            return self._cancelled(job, opts)

    def _cancelled(self, job: Job, opts: JobOptions) -> Finish:
        """A cancelled job fails with the canceller's reason, without retry."""
        reason = self._run.cancels.get(job.id) or "cancelled"
        return Finish(
            job.id,
            "failed",
            job.attempts_made + 1,
            time.time(),
            None,
            reason,
            None,
            keep=opts.remove_on_fail,
        )

    def _options_of(self, record: JobRecord) -> JobOptions:
        """Parse a job's stored options; consecutive jobs usually share them, so the last
        parse is reused when the options are equal (a dict compare is far cheaper). The trace
        context (:data:`TRACE_KEY`) is never part of the parse: first the options as stored
        are compared (the jobs of one bulk add share their carrier too), then without it."""
        stored = record.opts
        last = self._last_opts
        if last is not None and (last[0] is stored or last[0] == stored):
            return last[2]
        bare = stored
        if TRACE_KEY in stored:
            bare = {} if len(stored) == 1 else {k: v for k, v in stored.items() if k != TRACE_KEY}
        if last is not None and last[1] == bare:
            opts = last[2]
        else:
            opts = JobOptions.from_json(bare)
        self._last_opts = (stored, bare, opts)
        return opts

    def _call(self, job: Job) -> Awaitable[Any]:
        """The processor's run of ``job``: an async processor's own coroutine unless the
        telemetry has a span to open around it (no wrapper coroutine per job on the hot path).
        The telemetry is asked here, in the job's own task: a run it does not trace may just
        make its context current for the rest of the task (then it returns None)."""
        if self.telemetry is not None:
            scope = self.telemetry.processing(self.queue, job)
            if scope is not None:
                return self._traced(job, scope)
        if self._is_async:
            return self.processor(job)  # type: ignore[no-any-return]
        return self._invoke(job)

    async def _traced(self, job: Job, scope: AbstractContextManager[object]) -> Any:
        with scope:
            if self._is_async:  # the processor's own coroutine, no _invoke coroutine between
                return await self.processor(job)
            return await self._invoke(job)

    async def _invoke(self, job: Job) -> Any:
        if self._is_async:
            return await self.processor(job)
        run = self._run
        if run.sandbox is not None:
            return await run.sandbox.run(job)
        if run.threads is None:
            run.threads = ThreadPoolExecutor(
                self.options.concurrency, thread_name_prefix=f"polyjobs-{self.queue}"
            )
        loop = asyncio.get_running_loop()
        if self.telemetry is not None:  # the thread runs inside the job's span
            in_context = contextvars.copy_context().run
            result = await loop.run_in_executor(run.threads, in_context, self.processor, job)
        else:
            result = await loop.run_in_executor(run.threads, self.processor, job)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _rate_limited(self, job: Job, opts: JobOptions, exc: RateLimitError) -> Finish:
        """Hold the whole queue (only the job's group for a ``GroupRateLimitError`` on a job
        with a group), then put this job back without counting an attempt."""
        group = opts.group if isinstance(exc, GroupRateLimitError) else None
        if group is not None and CAP_GROUPS in self.backend.capabilities:
            return await self._group_held(job, group, exc)
        if CAP_RATE_LIMIT not in self.backend.capabilities:
            return failure(job, opts, RetryAfter(exc.seconds, str(exc)))
        now = time.time()
        try:
            await rate_limiter(self.backend).hold(self.queue, now + exc.seconds)
        except Exception as hold_error:
            self._error(hold_error, "rate-limit hold failed")
        else:
            self._hook("held", job.id, {"until": now + exc.seconds, "seconds": exc.seconds})
        return Finish(job.id, "retry", job.attempts_made, now, None, str(exc), None, retry_at=now)

    async def _group_held(self, job: Job, group: str, exc: RateLimitError) -> Finish:
        """Hold the job's group alone, then put the job back without counting an attempt."""
        now = time.time()
        try:
            await groups_of(self.backend).hold_group(self.queue, group, now + exc.seconds)
        except Exception as hold_error:
            self._error(hold_error, "group hold failed")
        else:
            held = {"until": now + exc.seconds, "seconds": exc.seconds, "group": group}
            self._hook("held", job.id, held)
        return Finish(job.id, "retry", job.attempts_made, now, None, str(exc), None, retry_at=now)

    def _on_progress(self, job: Job, progress: Any) -> None:
        self._emit("progress", job, progress)
        self._hook("progress", job.id, {"progress": progress})

    # -- finishing -------------------------------------------------------------------------
    async def _finish_loop(self) -> None:
        """Send the outbox's results in batches, each call also fetching jobs for the slots
        it frees. With ``concurrency`` > 1, on a backend served by another process whose calls
        cost little (Redis: ``finish_calls_in_flight = 2``), two calls may be in flight, each
        of at most half the slots: the jobs one call brought run while the backend serves the
        other, instead of the worker and the backend waiting for each other in turn. (On
        SQLite, which runs in the worker's process, and PostgreSQL, whose calls cost more of
        the worker's CPU, halving the batches cost more than the overlap gave.)"""
        run = self._run
        slots = run.slots
        # as many as the backend asks for (``finish_calls_in_flight``; 1 when it does not say)
        depth = max(1, getattr(self.backend, "finish_calls_in_flight", 1)) if slots.size > 1 else 1
        cap = -(-slots.size // depth)
        while not run.stop.is_set() and not run.finish_gave_up:
            limit = 1 if run.finish_failures else depth  # after a failure, one call until one works
            if not run.outbox or run.finishing >= limit or run.finish_pausing:
                run.outbox_ready.clear()
                await run.outbox_ready.wait()
                continue
            batch = run.outbox[:cap]
            del run.outbox[:cap]
            slots.release(len(batch))
            free = max(slots.free, 0)  # the batch's slots and any free ones
            fetch = 0 if run.closing.is_set() else free
            slots.reserve(free)
            run.finishing += 1
            held = _Held(run, free)
            if depth == 1:
                try:
                    await self._finish_call(batch, held, fetch)
                finally:
                    held.settle()
            else:
                call = run.tg.create_task(self._finish_call(batch, held, fetch))
                run.finish_calls.add(call)
                call.add_done_callback(run.finish_calls.discard)
                call.add_done_callback(held.settle)
                # the call goes out before the next batch is taken
                await asyncio.sleep(0)
        run.round_done.set()

    async def _finish_call(
        self, batch: list[tuple[Finish, Job, Any]], held: _Held, fetch: int
    ) -> None:
        """One finish call (counted up by the caller, down here; see :class:`_Held`). The
        slots it reserved stay reserved until the jobs it fetched start, which is before the
        call waits for anything else (a resent batch's lost jobs looked up), so that no other
        call fetches into them. A failed call puts its batch back at the head of the outbox
        after a pause that holds every other call back, and until a call works again only one
        is in flight: an outage sees one call at a time with a growing pause, as with a single
        finish loop."""
        run = self._run
        slots = run.slots
        try:
            result = await self.backend.finish(
                self.queue, self.id, [fin for fin, _, _ in batch], fetch, self.options.lease
            )
            run.finish_failures = 0
            OUTAGES.ok("finish")
            if fetch > 0:
                run.fetched = time.time()
        except Exception as exc:
            held.unreserve()
            slots.acquire(len(batch))
            run.resent.update(fin.job_id for fin, _, _ in batch)
            run.finish_failures += 1
            failures = run.finish_failures
            self._failed(exc, "finish")
            run.finish_pausing += 1
            try:
                await self._pause_after_failure(failures)
            finally:
                run.finish_pausing -= 1
                run.outbox[:0] = batch
                held.uncount()
                if run.grace_over and failures > 2:
                    run.finish_gave_up = True
                run.outbox_ready.set()
            return
        except BaseException:
            held.settle()
            raise
        held.uncount()
        run.outbox_ready.set()
        # the fetched jobs start in the slots reserved for them (and are owned, so their leases
        # are renewed) before anything here waits
        held.unreserve()
        self._start(result.jobs)
        lost = set(result.lost)
        if lost and lost & run.resent:
            lost -= await applied_before(
                self.backend, self.queue, [fin for fin, _, _ in batch], lost & run.resent
            )
        if run.resent:
            run.resent.difference_update(fin.job_id for fin, _, _ in batch)
        self._announce(batch, lost)
        run.round_done.set()
        if slots.free > 0:
            slots.notify()  # only then has the fetch loop something to fetch for
        if result.jobs:
            # jobs that end at once are in the outbox after one turn: the next call goes
            # out then, without a wake-up of the finish loop in between
            await asyncio.sleep(0)

    def _announce(self, batch: list[tuple[Finish, Job, Any]], lost: set[str]) -> None:
        run = self._run
        hooked = self.plugins is not None
        heard = self._listeners["completed"]
        for fin, job, outcome in batch:
            run.owned.discard(fin.job_id)
            cancelled = run.cancels.pop(fin.job_id, None) if run.cancels else None
            if lost and fin.job_id in lost:
                self._error(
                    RuntimeError(f"job {fin.job_id} was no longer owned (lease expired)"),
                    "result discarded",
                )
                continue
            job.attempts_made = fin.attempts_made
            if fin.status == "completed":
                job.state, job.returnvalue, job.finished_on = "completed", outcome, fin.finished_on
                if heard:
                    self._emit("completed", job, outcome)
                if hooked:
                    ran = _duration(job, fin)
                    self._hook("completed", job.id, {"returnvalue": outcome, "duration": ran})
                continue
            ran = _duration(job, fin)
            if fin.status == "failed":
                job.state, job.failed_reason = "failed", fin.failed_reason
                job.finished_on = fin.finished_on
                if cancelled is not None:
                    self._emit("cancelled", job, fin.failed_reason)
                    self._hook("cancelled", job.id, {"reason": fin.failed_reason})
                self._emit("failed", job, outcome)
                self._hook("failed", job.id, {"failed_reason": fin.failed_reason, "duration": ran})
            else:
                job.state = "delayed" if fin.retry_at > fin.finished_on else "waiting"
                job.failed_reason = fin.failed_reason
                self._emit("retrying", job, outcome)
                self._hook(
                    "retrying", job.id, {"failed_reason": fin.failed_reason, "duration": ran}
                )

    # -- leases, stalls, heartbeat ---------------------------------------------------------
    async def _sleep(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; False when the worker is stopping."""
        try:
            await asyncio.wait_for(self._run.stop.wait(), delay)
            return False
        except TimeoutError:
            return True

    async def _lease_loop(self) -> None:
        run = self._run
        while await self._sleep(self.options.lease / 3):
            owned = list(run.owned)
            if not owned:
                continue
            try:
                lost = await self.backend.extend(self.queue, self.id, owned, self.options.lease)
            except Exception as exc:
                self._failed(exc, "lease renewal")
                continue
            OUTAGES.ok("lease renewal")
            for job_id in lost:
                if job_id in run.owned and job_id in run.tasks:
                    self._error(RuntimeError(f"lease of job {job_id} lost"), "lease lost")

    async def _cancel_loop(self) -> None:
        """Ask the backend, while jobs run, whether one of them was cancelled, and stop it:
        an async or sandboxed job's task is cancelled (a sandbox child is killed with it); a
        thread job sees ``job.cancelled`` set (a thread cannot be interrupted)."""
        backend = canceller(self.backend)
        run = self._run
        while await self._sleep(self.options.cancel_interval):
            running = [i for i in run.tasks if i not in run.cancels]
            if not running:
                continue
            try:
                found = await backend.cancel_requests(self.queue, running)
            except Exception as exc:
                self._failed(exc, "cancel check")
                continue
            OUTAGES.ok("cancel check")
            for job_id, reason in found.items():
                job, task = run.jobs.get(job_id), run.tasks.get(job_id)
                if job is None or task is None or job_id in run.cancels:
                    continue
                run.cancels[job_id] = reason
                job.cancel_reason = reason
                job.cancelled = True
                log.info("job %s of queue %s cancelled: %s", job_id, self.queue, reason)
                if self._is_async or run.sandbox is not None:
                    task.cancel()

    async def _stalled_loop(self) -> None:
        while True:
            try:
                stalled = await self.backend.recover_stalled(self.queue, self.options.max_stalls)
                OUTAGES.ok("stalled-job check")
            except Exception as exc:
                self._failed(exc, "stalled-job check")
                stalled = []
            for item in stalled:
                self._emit("stalled", item.job_id, item.failed)
                self._hook("stalled", item.job_id, {"failed": item.failed})
            if not await self._sleep(self.options.stalled_interval):
                return

    def _fetch_health(self) -> float:
        """When the fetch loop last succeeded; now while every slot is busy (there is nothing
        to fetch for, which is not a failure)."""
        run = self._run
        if run.slots.in_use >= run.slots.size and not run.closing.is_set():
            return time.time()
        return run.fetched

    async def _heartbeat_loop(self) -> None:
        interval = self.options.heartbeat_interval
        while True:
            info = WorkerInfo(
                id=self.id,
                queue=self.queue,
                host=socket.gethostname(),
                pid=os.getpid(),
                concurrency=self.options.concurrency,
                started=self._run.started,
                active=len(self._run.tasks),
                fetched=self._fetch_health(),
            )
            try:
                await self.backend.heartbeat(info, ttl=interval * 3)
                OUTAGES.ok("heartbeat")
            except Exception as exc:
                self._failed(exc, "heartbeat")
            if not await self._sleep(interval):
                return


def _duration(job: Job, fin: Finish) -> float | None:
    """Seconds the attempt ran (start to end), or None when its start is unknown."""
    if job.processed_on is None:
        return None
    return max(fin.finished_on - job.processed_on, 0.0)


def _is_coroutine_callable(processor: Processor) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(processor):
        return True
    call = type(processor).__call__
    return not inspect.isroutine(processor) and inspect.iscoroutinefunction(call)


async def _guard(awaitable: Awaitable[Any], event: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("async %s listener failed", event)
