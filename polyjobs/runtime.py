"""``Runtime``: a set of queues (:mod:`polyjobs.spec`), their workers and schedules, run
together.

``Runtime`` runs an application's queues together, embeddable in any asyncio service::

    runtime = Runtime([spec_a, spec_b], backend)
    await runtime.start()
    ...
    await runtime.stop()

``polyjobs start`` is ``await runtime.run()``: start, wait for SIGINT/SIGTERM, stop within
the grace period (a second signal stops at once, handing unfinished jobs back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from polyjobs.backend import (
    CAP_CONTROL,
    CAP_DEDUP,
    CAP_GLOBAL_CONCURRENCY,
    CAP_GROUPS,
    CAP_RATE_LIMIT,
    controller,
)
from polyjobs.control import STOP, stop_grace
from polyjobs.errors import InvalidArgumentError, UnrecoverableError
from polyjobs.options import (
    seconds,
)
from polyjobs.outage import OUTAGES
from polyjobs.queue import Queue
from polyjobs.redact import redact_url
from polyjobs.spec import QueueSpec, Retention, ScheduleSpec
from polyjobs.worker import (
    JobEventSink,
    Processor,
    Worker,
    WorkerOptions,
    _is_coroutine_callable,
)

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.job import Job
    from polyjobs.telemetry import Telemetry

#: ``QueueSpec``, ``Retention`` and ``ScheduleSpec`` live in :mod:`polyjobs.spec`; importing
#: them from here keeps working.
__all__ = [
    "QueueSpec",
    "Retention",
    "Runtime",
    "RuntimeContext",
    "ScheduleSpec",
    "checked_processor",
    "specs_by_name",
]

log = logging.getLogger(__name__)

#: What a plugin's ``polyjobs_resources`` gives for each resource (the same type as
#: ``polyjobs.hookspecs.ResourceFactory``; named here so the runtime needs no hook module).
ResourceFactory = Callable[["RuntimeContext"], AbstractAsyncContextManager[Any]]


def checked_processor(spec: QueueSpec) -> Processor:
    """The spec's processor behind its ``validate``: a job whose data it refuses (added past
    the check: a plain ``Queue``, another producer) fails at once with the check's message, as
    an ``UnrecoverableError`` (no retry could help), and the processor does not run. A sandboxed
    processor runs as it is (the child process imports it by name)."""
    validate, processor = spec.validate, spec.processor
    if validate is None or spec.sandbox:
        return processor

    def check(job: Job) -> None:
        try:
            validate(job.data)
        except InvalidArgumentError as exc:
            raise UnrecoverableError(str(exc)) from None

    if _is_coroutine_callable(processor):

        async def checked_async(job: Job) -> Any:
            check(job)
            return await processor(job)

        return checked_async

    def checked(job: Job) -> Any:
        check(job)
        return processor(job)

    return checked


class RuntimeContext(Mapping[str, Any]):
    """What processors get as ``job.context`` under a :class:`Runtime`.

    A read-only mapping of the opened resources by name, plus ``settings`` (resolved
    configuration, plain data) and ``queue(name)`` for enqueueing follow-up jobs.
    """

    def __init__(self, runtime: Runtime, settings: Mapping[str, Any]) -> None:
        self._runtime = runtime
        self.settings = settings
        self._resources: dict[str, Any] = {}

    def queue(self, name: str) -> Queue:
        """The queue ``name`` on the runtime's backend, with its spec's job defaults and
        validation when the queue is known (run here or only registered)."""
        runtime = self._runtime
        if name not in runtime.queues:
            spec = runtime.known_specs.get(name)
            runtime.queues[name] = (
                spec.make_queue(runtime.backend, runtime.telemetry)
                if spec
                else Queue(name, runtime.backend, telemetry=runtime.telemetry)
            )
        return runtime.queues[name]

    def __getitem__(self, name: str) -> Any:
        return self._resources[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)


class Runtime:
    """Runs a worker per :class:`QueueSpec` on one backend and keeps their schedules.

    Processors get a :class:`RuntimeContext` as ``job.context``: the ``resources`` (entered
    at start, exited at stop), the ``settings``, and ``queue(name)``. ``known_specs`` are
    queues this runtime does not run but may enqueue to (their job defaults apply).
    ``telemetry`` traces the adds of its queues and the runs of its workers.
    """

    def __init__(
        self,
        specs: Iterable[QueueSpec],
        backend: Backend,
        *,
        resources: Mapping[str, ResourceFactory] | None = None,
        settings: Mapping[str, Any] | None = None,
        plugins: JobEventSink | None = None,
        worker_options: WorkerOptions | None = None,
        schedule: bool = True,
        known_specs: Mapping[str, QueueSpec] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.specs: dict[str, QueueSpec] = {}
        for spec in specs:
            if spec.name in self.specs:
                raise InvalidArgumentError(f"queue {spec.name!r} is given twice")
            self.specs[spec.name] = spec
        self.backend = backend
        self.known_specs = {**(known_specs or {}), **self.specs}
        self.resources = dict(resources or {})
        self.context = RuntimeContext(self, settings or {})
        self.plugins = plugins
        self.worker_options = worker_options or WorkerOptions()
        self.schedule = schedule
        self.queues: dict[str, Queue] = {
            name: spec.make_queue(backend, telemetry) for name, spec in self.specs.items()
        }
        self.workers: dict[str, Worker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._idle_watch: asyncio.Task[None] | None = None
        self._control_watch: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()

    def queue(self, name: str) -> Queue:
        return self.queues[name]

    async def _apply_limits(self, queue: Queue, spec: QueueSpec) -> None:
        """Set the spec's fleet-wide limits on its queue (a warning for each the backend
        cannot enforce: they are never dropped silently)."""
        caps = self.backend.capabilities
        limits: list[tuple[str, Any, str, Callable[[], Awaitable[None]]]] = [
            (
                "global concurrency",
                spec.global_concurrency,
                CAP_GLOBAL_CONCURRENCY,
                lambda: queue.set_global_concurrency(spec.global_concurrency),
            ),
            (
                "rate limit",
                spec.rate_limit,
                CAP_RATE_LIMIT,
                lambda: queue.set_rate_limit(spec.rate_limit),
            ),
            (
                "group concurrency",
                spec.group_concurrency,
                CAP_GROUPS,
                lambda: queue.set_group_concurrency(spec.group_concurrency),
            ),
            (
                "group rate limit",
                spec.group_rate_limit,
                CAP_GROUPS,
                lambda: queue.set_group_rate_limit(spec.group_rate_limit),
            ),
        ]
        for what, value, cap, apply in limits:
            if value is None:
                continue
            if cap in caps:
                await apply()
            elif cap == CAP_GROUPS:  # no job can have a group there: nothing to limit
                log.info(
                    "queue %s: %s %s unused: backend %s has no job groups",
                    queue.name,
                    what,
                    value,
                    redact_url(self.backend.url),
                )
            else:
                log.warning(
                    "queue %s: %s %s NOT enforced: backend %s has none",
                    queue.name,
                    what,
                    value,
                    redact_url(self.backend.url),
                )

    async def start(self, burst: bool = False) -> None:
        """Upsert the schedules, then start one worker per queue (as background tasks).

        With ``burst`` the workers stop once every queue of the runtime is idle at the same
        time (nothing waiting, active or delayed), so a chain of queues (one enqueueing into
        the next) runs to its end."""
        if self._tasks:
            raise InvalidArgumentError("this runtime is already started")
        for name, factory in self.resources.items():
            self.context._resources[name] = await self._stack.enter_async_context(
                factory(self.context)
            )
        if self.schedule:
            await self.upsert_schedules()
        for name, spec in self.specs.items():
            await self._apply_limits(self.queues[name], spec)
        for name, spec in self.specs.items():
            options = replace(
                self.worker_options,
                concurrency=spec.concurrency,
                timeout=spec.timeout,
                schedule=self.schedule,
                sandbox=spec.sandbox,
            )
            worker = Worker(
                name,
                checked_processor(spec),
                self.backend,
                options=options,
                context=self.context,
                plugins=self.plugins,
                telemetry=self.telemetry,
            )
            self.workers[name] = worker
            self._tasks[name] = asyncio.create_task(worker.run(), name=f"worker:{name}")
        if burst:
            self._idle_watch = asyncio.create_task(self._close_when_idle())
        if CAP_CONTROL in self.backend.capabilities:
            # listen from the newest message the backend holds, not from this machine's
            # clock: a stop sent later counts even when the sender's clock is behind ours
            held = await controller(self.backend).control_messages(0.0)
            since = held[-1].at if held else 0.0
            self._control_watch = asyncio.create_task(self._obey_control(since))

    async def _obey_control(self, since: float) -> None:
        """Follow the backend's control channel: a ``stop`` closes every worker."""
        interval = self.worker_options.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            try:
                messages = await controller(self.backend).control_messages(since)
                OUTAGES.ok("control channel")
            except Exception as exc:
                if not OUTAGES.failed("control channel", exc):
                    log.warning("reading control messages failed: %s", exc)
                continue
            for message in messages:
                since = max(since, message.at)
                if message.command == STOP:
                    grace = stop_grace(message, 30.0)
                    log.info("stop requested through the backend (grace %gs)", grace)
                    for worker in self.workers.values():
                        worker.request_close(grace)
                    return

    async def _idle(self) -> bool:
        if any(worker.busy for worker in self.workers.values()):
            return False
        for queue in self.queues.values():
            if queue.name not in self.specs:
                continue
            counts = await queue.counts()
            waiting = 0 if counts["paused"] else counts["waiting"]
            if waiting or counts["active"] or counts["delayed"]:
                return False
        return True

    async def _close_when_idle(self, interval: float = 0.05) -> None:
        """Burst mode: close the workers once all queues look idle twice in a row."""
        streak = 0
        while streak < 2:
            await asyncio.sleep(interval)
            try:
                streak = streak + 1 if await self._idle() else 0
                OUTAGES.ok("burst idle check")
            except Exception as exc:
                if not OUTAGES.failed("burst idle check", exc):
                    log.warning("burst idle check failed: %s", exc)
                streak = 0
        for worker in self.workers.values():
            worker.request_close()

    async def upsert_schedules(self) -> None:
        for name, spec in self.specs.items():
            sched = spec.schedule
            if sched is None:
                continue
            dedup = CAP_DEDUP in self.backend.capabilities
            if sched.no_overlap and not dedup:
                log.warning(
                    "schedule %s of queue %s: the backend %s has no deduplication windows, so"
                    " its slots may pile up behind a slow run",
                    sched.key,
                    name,
                    redact_url(self.backend.url),
                )
            await self.queues[name].upsert_schedule(
                sched.key,
                every=sched.every,
                cron=sched.cron,
                tz=sched.tz,
                name=sched.name,
                data=sched.data,
                options=sched.job_options(dedup),
                missed=sched.missed,
            )

    async def wait(self) -> None:
        """Wait until every worker has stopped (in burst mode: until the queues are idle)."""
        if self._tasks:
            await asyncio.gather(*self._tasks.values())

    async def stop(self, grace: float = 30.0) -> None:
        """Close every worker: active jobs get ``grace`` seconds, then are handed back."""
        grace = seconds(grace, "grace")
        for watch in (self._idle_watch, self._control_watch):
            if watch is not None:
                watch.cancel()
        self._idle_watch = self._control_watch = None
        await asyncio.gather(*(w.close(grace) for w in self.workers.values()))
        results = await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for name, result in zip(self._tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("worker for queue %s ended with %r", name, result)
        self._tasks.clear()
        await self._stack.aclose()
        self.context._resources.clear()

    async def run(self, *, burst: bool = False, grace: float = 30.0) -> None:
        """Start, run until SIGINT/SIGTERM (or until idle with ``burst``), then stop.

        The first signal stops gracefully within ``grace`` seconds; a second one stops at
        once, handing unfinished jobs back to the queue.
        """
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            stop_requested.set()
            if signals == 1:
                active = sum(w.active_jobs for w in self.workers.values())
                log.warning(
                    "stopping: %d active job(s), waiting up to %gs; a second signal stops at once",
                    active,
                    grace,
                    extra={"event": "stopping", "detail": {"active": active, "grace": grace}},
                )
            if signals > 1:
                log.warning(
                    "stopping now: unfinished jobs go back to their queues",
                    extra={"event": "forcing"},
                )
                for worker in self.workers.values():
                    worker.request_close(0.0)

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
        try:
            await self.start(burst=burst)
            waiter = asyncio.create_task(self.wait())
            stopper = asyncio.create_task(stop_requested.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            await self.stop(0.0 if signals > 1 else grace)
            waiter.cancel()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


def specs_by_name(specs: Mapping[str, QueueSpec], names: Iterable[str]) -> list[QueueSpec]:
    """Pick specs by full or short name; an unknown name raises ``InvalidArgumentError``."""
    by_short = {s.short_name: s for s in specs.values() if s.short_name}
    chosen = []
    for name in names:
        spec = specs.get(name) or by_short.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise InvalidArgumentError(f"unknown queue {name!r} (known: {known})")
        chosen.append(spec)
    return chosen
