"""``Queue``: add jobs, inspect them, and administer one named queue on a backend."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from polyjobs import codec
from polyjobs.backend import (
    CAP_DEDUP,
    CAP_FLOWS,
    CAP_GLOBAL_CONCURRENCY,
    CAP_GROUPS,
    CAP_RATE_LIMIT,
    STATES,
    AddResult,
    CancelOutcome,
    JobRecord,
    NewJob,
    ScheduleRecord,
    canceller,
    concurrency_of,
    deduplicator,
    groups_of,
    rate_limiter,
)
from polyjobs.errors import InvalidArgumentError, JobNotFoundError
from polyjobs.job import Job
from polyjobs.options import (
    MAX_DELAY,
    Duration,
    JobOptions,
    RateLimit,
    check_group,
    check_job_id,
    seconds,
)
from polyjobs.scheduling import MISSED_POLICIES, Cadence
from polyjobs.telemetry import TRACE_KEY

if TYPE_CHECKING:
    from polyjobs.backend import AddResult, Backend, JobState, WorkerInfo
    from polyjobs.telemetry import Telemetry

log = logging.getLogger(__name__)

_QUEUE_NAME_MAX = 200
QUEUE_EVENTS = ("deduplicated",)

#: The largest fleet-wide concurrency cap (``Queue.set_global_concurrency``).
MAX_GLOBAL_CONCURRENCY = 1_000_000


def check_global_concurrency(limit: object, what: str = "global concurrency") -> int | None:
    """A valid concurrency cap (a positive integer) or None; else one clear error."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidArgumentError(f"{what} must be an integer, got {limit!r}")
    if not 1 <= limit <= MAX_GLOBAL_CONCURRENCY:
        raise InvalidArgumentError(f"{what} must be 1..{MAX_GLOBAL_CONCURRENCY}, got {limit}")
    return limit


#: The longest reason ``Queue.cancel`` takes.
MAX_CANCEL_REASON = 1000


@dataclass(frozen=True, slots=True)
class Deduplicated:
    """An add absorbed by a deduplication window (the ``deduplicated`` event of a Queue).

    ``job_id`` holds ``deduplication_id`` (it is what ``add`` returned); ``name`` and ``data``
    are the absorbed add's; ``outcome`` is ``ignored`` (dropped), ``replaced`` (the holder,
    not yet started, took this add's data and delay) or ``kept-next`` (it runs after the
    active holder, unless a newer add replaces it first).
    """

    queue: str
    deduplication_id: str
    job_id: str
    name: str
    data: Any
    outcome: str


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > _QUEUE_NAME_MAX:
        raise InvalidArgumentError(f"queue name must be 1..{_QUEUE_NAME_MAX} characters: {name!r}")
    if any(c.isspace() or c in "{}" or ord(c) < 32 for c in name):
        raise InvalidArgumentError(f"queue name {name!r} may not hold spaces, braces or controls")
    return name


def check_state(state: str) -> JobState:
    """Return ``state`` typed as a ``JobState``, or raise for an unknown one."""
    if state not in STATES:
        raise InvalidArgumentError(f"unknown job state {state!r} (one of {', '.join(STATES)})")
    return state


class Queue:
    """One named queue on a backend. Every method is a coroutine.

    ``default_options`` apply to every job added here (each ``add`` may override them);
    ``max_payload`` bounds the JSON size of a job's data (default 512 KiB); ``validate``, when
    given, checks each job's data before it is stored and raises ``InvalidArgumentError`` for
    data the queue's processor could not use. ``telemetry`` (e.g.
    :class:`polyjobs.otel.OtelTelemetry`) traces every add and stores the trace context in the
    jobs, so their runs continue the trace.
    """

    def __init__(
        self,
        name: str,
        backend: Backend,
        *,
        default_options: Mapping[str, Any] | JobOptions | None = None,
        max_payload: int = codec.DEFAULT_MAX_PAYLOAD,
        validate: Callable[[Any], None] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.name = check_queue_name(name)
        self.validate = validate
        self.telemetry = telemetry
        self.backend = backend
        if isinstance(default_options, JobOptions):
            self.default_options = default_options
        else:
            self.default_options = JobOptions.parse(default_options or {})
        self.max_payload = max_payload
        # the stored options of jobs that give none, made once (and again if the defaults change)
        self._defaults_json = (self.default_options, self.default_options.to_json())
        self._listeners: dict[str, list[Callable[[Deduplicated], Any]]] = {"deduplicated": []}

    def __repr__(self) -> str:
        return f"<Queue {self.name!r}>"

    def _job(self, record: JobRecord) -> Job:
        return Job(record, self.name, self.backend)

    def _parse_job(
        self,
        name: str,
        data: Any,
        options: Mapping[str, Any],
        now: float,
        memo: _OptionsMemo | None = None,
    ) -> tuple[NewJob, JobOptions]:
        """The ``NewJob`` to store and its options. With ``memo`` (a bulk add's), options met
        before are not parsed again, and those options leave out the job's ``job_id`` (the
        ``NewJob`` has it)."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"job name must be a non-empty string, got {name!r}")
        if not name.isascii():  # (a flag of the string: ASCII is valid Unicode)
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidArgumentError(
                    "job name holds text that is not valid Unicode"
                ) from None
        if not options:
            opts = self.default_options
            cached, opts_json = self._defaults_json  # (``_opts_json``'s hit, inline)
            if opts is not cached:
                opts_json = self._opts_json(opts)
            job_id = opts.job_id
        elif memo is None:
            opts = JobOptions.parse(options, self.default_options)
            opts_json, job_id = self._opts_json(opts), opts.job_id
        else:
            opts, opts_json, job_id = memo.resolve(options)
        data_json = codec.encode(data, "data of job", self.max_payload, name)
        if self.validate is not None:
            self.validate(data)
        dedup, group = opts.deduplication, opts.group
        if dedup is not None:
            deduplicator(self.backend)  # ConfigError on a backend without windows
        if group is not None:
            groups_of(self.backend)  # ConfigError on a backend without groups: never ignored
        new = NewJob(  # positional (NewJob's order): cheaper than keywords, once per add
            name,
            data_json,
            opts_json,
            now,
            job_id,
            now + opts.delay,
            opts.priority,
            opts.lifo,
            dedup,
            group,
        )
        return new, opts

    def _opts_json(self, opts: JobOptions) -> dict[str, Any]:
        cached, text = self._defaults_json
        if opts is cached:
            return text
        if opts is self.default_options:
            self._defaults_json = (opts, opts.to_json())
            return self._defaults_json[1]
        return opts.to_json()

    # -- events ----------------------------------------------------------------------------
    def on(self, event: str, callback: Callable[[Deduplicated], Any]) -> None:
        """Call ``callback`` (a plain or coroutine function) on an event of this Queue object:
        ``deduplicated(Deduplicated)`` for each of its adds that a deduplication window
        absorbed."""
        if event not in self._listeners:
            raise InvalidArgumentError(f"unknown queue event {event!r} (one of {QUEUE_EVENTS})")
        self._listeners[event].append(callback)

    async def _emit(self, event: str, payload: Deduplicated) -> None:
        for callback in self._listeners[event]:
            try:
                result = callback(payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s listener failed on queue %s", event, self.name)

    # -- adding ----------------------------------------------------------------------------
    async def add(self, name: str, data: Any = None, **options: Any) -> Job:
        """Add one job. Options: ``job_id``, ``delay``, ``priority``, ``lifo``, ``attempts``,
        ``backoff``, ``timeout``, ``remove_on_complete``, ``remove_on_fail``, ``group``.

        ``group`` (e.g. ``"wallet-0xabc"``, on backends with the ``groups`` capability)
        puts the job in a group: groups take turns (one with many jobs does not hold back
        the others), each may be capped (``set_group_concurrency``, ``set_group_rate_limit``)
        and held alone (``GroupRateLimitError``); priorities order the jobs within a group.

        With a ``job_id`` that already exists, nothing is added and the existing job is
        returned.
        """
        new = self._parse_job(name, data, options, time.time())[0]
        if self.telemetry is None:
            result = (await self.backend.add(self.name, (new,)))[0]
        else:
            (new,), (result,) = await self._add_traced([new])
        if result.added and result.deduplicated is None:  # the common case, without a loop
            return Job.added(self.name, self.backend, result.id, new)  # (_added_job, inline)
        return await self._job_of(new, result)

    async def add_bulk(self, jobs: Iterable[Mapping[str, Any] | tuple[Any, ...]]) -> list[Job]:
        """Add many jobs in one call: each a ``{"name", "data", "options"}`` mapping or a
        ``(name, data[, options])`` tuple. Every job is validated before any is stored."""
        now = time.time()
        new_jobs = []
        memo = _OptionsMemo(self, type(jobs) is list or type(jobs) is tuple)
        parse = self._parse_job
        for item in jobs:
            if type(item) is not tuple and isinstance(item, Mapping):  # (tuples: no ABC check)
                unknown = set(item) - {"name", "data", "options"}
                if unknown:
                    raise InvalidArgumentError(f"unknown keys in bulk job: {sorted(unknown)}")
                name, data, opts = item.get("name"), item.get("data"), item.get("options") or {}
            elif len(item) == 2:
                (name, data), opts = item, None
            elif len(item) == 3:
                name, data, opts = item
            elif len(item) == 1:
                name, data, opts = item[0], None, None
            else:
                raise InvalidArgumentError(f"bulk job must be (name, data[, options]): {item}")
            new_jobs.append(parse(str(name or ""), data, opts or {}, now, memo)[0])
        return await self._add_many(new_jobs)

    async def _add_many(self, new_jobs: list[NewJob]) -> list[Job]:
        if not new_jobs:
            return []
        if self.telemetry is None:
            results = await self.backend.add(self.name, new_jobs)
        else:
            new_jobs, results = await self._add_traced(new_jobs)
        jobs = []
        added, queue, backend = Job.added, self.name, self.backend
        for new, result in zip(new_jobs, results, strict=True):
            if result.added and result.deduplicated is None:  # the common case: no await
                jobs.append(added(queue, backend, result.id, new))
            else:
                jobs.append(await self._job_of(new, result))
        return jobs

    def _added_job(self, new: NewJob, job_id: str) -> Job:
        """The ``Job`` of a job just stored from ``new``, its data decoded only if read."""
        return Job.added(self.name, self.backend, job_id, new)

    async def _job_of(self, new: NewJob, result: AddResult) -> Job:
        """What ``add`` returns for ``new``: the job stored from it, or the one that existed
        (same id) or absorbed it (deduplication window), read back; tells the listeners of an
        absorbed add."""
        found = None if result.added else await self.backend.get_job(self.name, result.id)
        job = self._added_job(new, result.id) if found is None else self._job(found)
        if result.deduplicated is not None:
            await self._absorbed(new, result)
        return job

    async def _absorbed(self, new: NewJob, result: AddResult) -> None:
        assert new.dedup is not None and result.deduplicated is not None
        if self._listeners["deduplicated"]:
            event = Deduplicated(
                self.name,
                new.dedup.id,
                result.id,
                new.name,
                codec.decode(new.data_json),
                result.deduplicated,
            )
            await self._emit("deduplicated", event)

    async def _add_traced(self, new_jobs: list[NewJob]) -> tuple[list[NewJob], list[AddResult]]:
        """Add inside the telemetry's span, with its trace context stored in every job."""
        assert self.telemetry is not None
        with self.telemetry.adding(self.name, new_jobs) as scope:
            if scope.carrier:
                carrier = dict(scope.carrier)
                # the jobs of a bulk add mostly share one options object: one copy with the
                # carrier for all of them (backends never change a job's options in place)
                traced: dict[int, dict[str, Any]] = {}
                new_jobs = list(new_jobs)
                for i, j in enumerate(new_jobs):
                    opts = traced.get(id(j.opts))
                    if opts is None:
                        opts = traced[id(j.opts)] = {**j.opts, TRACE_KEY: carrier}
                    new_jobs[i] = replace(j, opts=opts)
            results = await self.backend.add(self.name, new_jobs)
            scope.added([r.id for r in results])
        return new_jobs, results

    # -- reading ---------------------------------------------------------------------------
    async def get_job(self, job_id: str) -> Job | None:
        record = await self.backend.get_job(self.name, check_job_id(job_id))
        return None if record is None else self._job(record)

    async def counts(self) -> dict[str, Any]:
        """``{"waiting", "active", "delayed", "waiting-children", "completed", "failed": int,
        "paused": bool}``."""
        counts: dict[str, Any] = dict(await self.backend.counts(self.name))
        counts.setdefault("waiting-children", 0)  # backends without flows have none
        counts["paused"] = await self.backend.is_paused(self.name)
        return counts

    async def jobs(self, state: str, start: int = 0, end: int = -1) -> list[Job]:
        """Jobs in ``state``, positions ``start..end`` inclusive (``-1`` is the last)."""
        checked = check_state(state)
        if checked == "waiting-children" and CAP_FLOWS not in self.backend.capabilities:
            return []
        records = await self.backend.list_jobs(self.name, checked, start, end)
        return [self._job(r) for r in records]

    async def logs(self, job_id: str, start: int = 0, end: int = -1) -> list[str]:
        return await self.backend.get_logs(self.name, check_job_id(job_id), start, end)

    async def workers(self) -> list[WorkerInfo]:
        """The workers of this queue that sent a heartbeat recently."""
        return await self.backend.list_workers(self.name)

    # -- administration --------------------------------------------------------------------
    async def pause(self) -> None:
        """Stop every worker of this queue from taking new jobs (active ones finish)."""
        await self.backend.pause(self.name)

    async def resume(self) -> None:
        await self.backend.resume(self.name)

    async def is_paused(self) -> bool:
        return await self.backend.is_paused(self.name)

    async def drain(self, delayed: bool = False) -> int:
        """Remove every waiting job (and delayed ones with ``delayed=True``)."""
        return await self.backend.drain(self.name, delayed)

    async def clean(self, state: str, grace: Duration = 0, limit: int = 0) -> list[str]:
        """Remove up to ``limit`` (0: all) jobs in ``state`` older than ``grace``."""
        if limit < 0:
            raise InvalidArgumentError(f"limit must be >= 0, got {limit}")
        checked, grace_s = check_state(state), seconds(grace, "grace")
        if checked == "waiting-children" and CAP_FLOWS not in self.backend.capabilities:
            return []
        return await self.backend.clean(self.name, checked, grace_s, limit)

    async def remove(self, job_id: str) -> bool:
        """Remove a job that is not active; False when there is no such job or it is active."""
        return await self.backend.remove(self.name, check_job_id(job_id))

    async def retry(self, job_id: str) -> bool:
        """Send a failed job back to waiting, its attempts reset; False if it is not failed."""
        return await self.backend.retry(self.name, check_job_id(job_id))

    async def retry_failed(self) -> int:
        """Retry every failed job; return how many."""
        retried = 0
        while True:
            failed = await self.backend.list_jobs(self.name, "failed", 0, 499)
            if not failed:
                return retried
            for record in failed:
                retried += await self.backend.retry(self.name, record.id)

    async def cancel(self, job_id: str, reason: str = "cancelled") -> CancelOutcome | None:
        """Cancel a job, whichever worker, process or machine would run it.

        A waiting or delayed job is not started: it fails now with ``reason``, without retry
        (``"failed"``). An active one is told (``"requested"``): within about a second its
        worker stops it (an ``async`` processor gets ``asyncio.CancelledError`` where it
        awaits, a sandboxed one is killed, a thread processor sees ``job.cancelled`` set) and
        fails it with ``reason``, without retry. None: the job has ended, waits for its
        children, or does not exist."""
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidArgumentError("a cancel reason must be non-empty text")
        if len(reason) > MAX_CANCEL_REASON:
            raise InvalidArgumentError(
                f"a cancel reason has at most {MAX_CANCEL_REASON} characters"
            )
        return await canceller(self.backend).cancel(
            self.name, check_job_id(job_id), reason, time.time()
        )

    async def promote(self, job_id: str) -> bool:
        """Run a delayed job now."""
        return await self.backend.promote(self.name, check_job_id(job_id))

    async def obliterate(self) -> None:
        """Remove the queue and everything in it."""
        await self.backend.obliterate(self.name)

    # -- deduplication ---------------------------------------------------------------------
    async def deduplication_job_id(self, dedup_id: str) -> str | None:
        """The id of the job holding deduplication id ``dedup_id``, or None when it is free."""
        if CAP_DEDUP not in self.backend.capabilities:
            return None
        return await deduplicator(self.backend).get_deduplication(self.name, dedup_id)

    async def remove_deduplication_key(self, dedup_id: str) -> bool:
        """Free deduplication id ``dedup_id`` at once (the next add with it is a new job);
        False when no job held it."""
        return await deduplicator(self.backend).remove_deduplication(self.name, dedup_id)

    # -- rate limit ------------------------------------------------------------------------
    async def set_rate_limit(self, limit: RateLimit | str | None) -> None:
        """Allow at most ``max`` job starts per ``duration`` (e.g. ``"5/2s"``) across every
        worker sharing the backend; None removes the limit."""
        parsed = None if limit is None else RateLimit.parse(limit)
        await rate_limiter(self.backend).set_rate_limit(self.name, parsed)

    async def set_global_concurrency(self, limit: int | None) -> None:
        """Let at most ``limit`` jobs of this queue run at once across every worker, process
        and machine sharing the backend (None removes the cap). Running jobs are never
        stopped by a lower cap; new ones wait."""
        await concurrency_of(self.backend).set_global_concurrency(
            self.name, check_global_concurrency(limit)
        )

    async def global_concurrency(self) -> int | None:
        """The queue's fleet-wide cap on running jobs, or None (also on backends without)."""
        if CAP_GLOBAL_CONCURRENCY not in self.backend.capabilities:
            return None
        return await concurrency_of(self.backend).get_global_concurrency(self.name)

    # -- groups ----------------------------------------------------------------------------
    async def set_group_concurrency(self, limit: int | None) -> None:
        """Let at most ``limit`` jobs of each group run at once, across every worker,
        process and machine (None removes the cap; 1 runs each group's jobs one at a time).
        """
        await groups_of(self.backend).set_group_concurrency(
            self.name, check_global_concurrency(limit, "group concurrency")
        )

    async def group_concurrency(self) -> int | None:
        """The per-group cap on running jobs, or None (also on backends without groups)."""
        if CAP_GROUPS not in self.backend.capabilities:
            return None
        return await groups_of(self.backend).get_group_concurrency(self.name)

    async def set_group_rate_limit(self, limit: RateLimit | str | None) -> None:
        """Allow each group at most ``max`` job starts per ``duration`` (e.g. ``"5/2s"``),
        across every worker; None removes the limit."""
        parsed = None if limit is None else RateLimit.parse(limit)
        await groups_of(self.backend).set_group_rate_limit(self.name, parsed)

    async def group_rate_limit(self) -> RateLimit | None:
        """The per-group rate limit, or None (also on backends without groups)."""
        if CAP_GROUPS not in self.backend.capabilities:
            return None
        return await groups_of(self.backend).get_group_rate_limit(self.name)

    async def hold_group(self, group: str, seconds_: Duration) -> None:
        """Start no job of ``group`` for ``seconds_`` (what ``GroupRateLimitError`` does)."""
        secs = seconds(seconds_, "hold", MAX_DELAY)
        await groups_of(self.backend).hold_group(self.name, check_group(group), time.time() + secs)

    async def rate_limit(self) -> RateLimit | None:
        """The queue's rate limit, or None (also on backends without rate limits)."""
        if CAP_RATE_LIMIT not in self.backend.capabilities:
            return None
        return await rate_limiter(self.backend).get_rate_limit(self.name)

    # -- schedules -------------------------------------------------------------------------
    async def upsert_schedule(
        self,
        key: str,
        *,
        every: Duration | str | None = None,
        cron: str | None = None,
        tz: str | None = None,
        name: str | None = None,
        data: Any = None,
        options: Mapping[str, Any] | None = None,
        missed: str = "skip",
        grace: Duration | None = None,
    ) -> ScheduleRecord:
        """Create or update the repeatable job ``key``: every ``every`` or on ``cron`` in
        ``tz``. Upserting the same cadence again (from any process) keeps its next slot.

        ``options`` may hold a ``deduplication`` window: every slot's job is added under it, so
        ``{"id": key, "keep_last_if_active": True}`` keeps at most one run waiting behind the
        active one however slow the runs are (slots that find a run waiting are absorbed)."""
        check_job_id(key)
        cadence = Cadence(None if every is None else seconds(every, "every"), cron, tz)
        if missed not in MISSED_POLICIES:
            raise InvalidArgumentError(f"missed must be one of {', '.join(MISSED_POLICIES)}")
        opts = JobOptions.parse(options or {}, self.default_options)
        if opts.job_id is not None or opts.delay:
            raise InvalidArgumentError("scheduled jobs take neither job_id nor delay")
        if opts.deduplication is not None:
            # each slot's job is added under the window (e.g. no pile-up behind a slow run)
            deduplicator(self.backend)  # ConfigError on a backend without windows
        if opts.group is not None:
            groups_of(self.backend)  # ConfigError on a backend without groups
        now = time.time()
        record = ScheduleRecord(
            key=key,
            name=name or key,
            data_json=codec.encode(data, f"data of schedule {key!r}", self.max_payload),
            opts=opts.to_json(),
            next_run=cadence.next_after(now),
            every=cadence.every,
            cron=cadence.cron,
            tz=cadence.tz,
            missed=missed,
            grace=None if grace is None else seconds(grace, "grace"),
            created=now,
        )
        return await self.backend.save_schedule(self.name, record)

    async def remove_schedule(self, key: str) -> bool:
        return await self.backend.remove_schedule(self.name, check_job_id(key))

    async def schedules(self) -> list[ScheduleRecord]:
        return sorted(await self.backend.get_schedules(self.name), key=lambda s: s.next_run)

    async def require_job(self, job_id: str) -> Job:
        """``get_job`` that raises ``JobNotFoundError`` instead of returning None."""
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found in queue {self.name!r}")
        return job


class _OptionsMemo:
    """The options of one bulk add's jobs, each parsed and encoded once: found again by
    options object (only when every job was given before the first is parsed, as in a list:
    a generator may change one object between its jobs; the memo keeps each object alive, so
    its id is not reused) or by content (the items and their types, when all hashable). A
    ``job_id`` is checked alone, the other options found as if they came without it."""

    __slots__ = ("by_content", "by_object", "queue")

    def __init__(self, queue: Queue, by_object: bool) -> None:
        self.queue = queue
        self.by_object: dict[int, tuple[Any, _Resolved]] | None = {} if by_object else None
        self.by_content: dict[Any, _Resolved] = {}

    def resolve(self, options: Mapping[str, Any]) -> _Resolved:
        """The options without ``job_id``, their stored JSON form (with it) and the job id."""
        by_object = self.by_object
        if by_object is not None:
            seen = by_object.get(id(options))
            if seen is not None:
                return seen[1]
        if "job_id" in options:
            try:
                found = self._with_job_id(options)
            except InvalidArgumentError:
                JobOptions.parse(options, self.queue.default_options)  # its error, as alone
                raise
        else:
            found = self._by_content(options)
        if by_object is not None:
            by_object[id(options)] = (options, found)
        return found

    def _with_job_id(self, options: Mapping[str, Any]) -> _Resolved:
        job_id = options["job_id"]
        job_id = None if job_id is None else check_job_id(job_id)
        rest = {k: v for k, v in options.items() if k != "job_id"}
        if rest:
            opts, rest_json, _ = self._by_content(rest)
        else:
            opts = self.queue.default_options
            rest_json = self.queue._opts_json(opts)
        return opts, {**rest_json, "job_id": job_id}, job_id  # (job_id: the first key)

    def _by_content(self, options: Mapping[str, Any]) -> _Resolved:
        key: Any = (tuple(options.items()), tuple(map(type, options.values())))
        try:
            found = self.by_content.get(key)
        except TypeError:  # a value that is not hashable (a dict): parsed by object only
            key = found = None
        if found is None:
            queue = self.queue
            opts = JobOptions.parse(options, queue.default_options)
            found = (opts, queue._opts_json(opts), opts.job_id)
            if key is not None:
                self.by_content[key] = found
        return found


#: Options without their job id, their stored JSON form (with it), and the job id.
_Resolved = tuple[JobOptions, dict[str, Any], str | None]
