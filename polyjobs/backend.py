"""The Backend contract: what a queue backend stores and how it moves jobs between states.

A backend does only the atomic storage step of each transition; the engine (``Queue``,
``Worker``) does the shared bookkeeping: validation, timestamps, attempts, backoff, events.
Every method that changes a job's state is one atomic step (a Lua script on Redis, one
transaction on SQLite, one synchronous block on the in-memory backend). No job is ever in two
states or in none.

Times are epoch seconds (``float``). Payloads cross the contract as JSON text (``*_json``
fields) so a backend never has to guess how to encode user data, and never pickles.

A backend passes :mod:`polyjobs.testing.contract` to be done. It declares what it can do in
``capabilities`` and the contract suite skips by capability, never by backend name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from polyjobs.errors import ConfigError
from polyjobs.options import Deduplication, FailurePolicy, Keep, RateLimit
from polyjobs.redact import redact_url

JobState = Literal["waiting", "delayed", "active", "waiting-children", "completed", "failed"]
STATES: tuple[JobState, ...] = (
    "waiting",
    "active",
    "delayed",
    "waiting-children",
    "completed",
    "failed",
)
#: The states every backend keeps; ``waiting-children`` needs :data:`CAP_FLOWS`.
BASE_STATES: tuple[JobState, ...] = ("waiting", "active", "delayed", "completed", "failed")
FinishStatus = Literal["completed", "failed", "retry"]

#: Capability names a backend may declare.
CAP_SHARED = "shared"  # several processes (or machines) can share one backend
CAP_DURABLE = "durable"  # jobs survive a restart of every process
CAP_RATE_LIMIT = "rate-limit"  # set_rate_limit / get_rate_limit / hold, enforced in fetch
CAP_CONTROL = "control"  # send_control / control_messages: commands to every process
CAP_FLOWS = "flows"  # add_flow, get_dependencies, get_parents: parents wait for children
CAP_FLOWS_ACROSS_QUEUES = "flows-across-queues"  # a flow's jobs may live in several queues
CAP_DEDUP = "dedup"  # NewJob.dedup windows, get/remove_deduplication
CAP_METRICS = "metrics"  # per-minute completed/failed counts kept by finish, get_metrics
CAP_GLOBAL_CONCURRENCY = "global-concurrency"  # a cap on a queue's active jobs, fleet-wide
CAP_CANCEL = "cancel"  # cancel / cancel_requests: end a job that has not started, stop one that has
CAP_GROUPS = "groups"  # NewJob.group: fair turns between groups, per-group limits and holds


@dataclass(slots=True)
class JobRecord:
    """A job as stored. ``data``, ``progress`` and ``returnvalue`` are decoded JSON values."""

    id: str
    name: str
    data: Any
    opts: dict[str, Any]
    state: JobState
    timestamp: float
    run_at: float = 0.0
    priority: int = 0
    attempts_made: int = 0
    attempts_started: int = 0
    stalls: int = 0
    progress: Any = None
    returnvalue: Any = None
    failed_reason: str | None = None
    stacktrace: str | None = None
    processed_on: float | None = None
    finished_on: float | None = None
    worker: str | None = None
    lease_until: float | None = None


@dataclass(slots=True)
class NewJob:
    """A job to add. ``job_id`` None lets the backend assign the next numeric id.

    ``run_at`` greater than ``timestamp`` makes the job ``delayed`` until then; ``lifo`` puts
    it first within its priority level. Priority 0 comes first, then 1, 2, ... (FIFO within a
    level).

    Read-only by convention (backends and queues never change one; ``dataclasses.replace``
    makes a changed copy), not frozen: a frozen dataclass sets each field through
    ``object.__setattr__``, which made building it a tenth of a single add's Python.
    """

    name: str
    data_json: str
    opts: dict[str, Any]
    timestamp: float
    job_id: str | None = None
    run_at: float = 0.0
    priority: int = 0
    lifo: bool = False
    dedup: Deduplication | None = None  # only for backends with CAP_DEDUP
    group: str | None = None  # only for backends with CAP_GROUPS (also in opts["group"])


@dataclass(frozen=True, slots=True)
class AddResult:
    """What became of one added job.

    ``added`` False: a job with this id already existed and nothing was changed, or (with
    ``deduplicated`` set) the job's deduplication id is held by job ``id``: ``"ignored"`` (the
    add was dropped), ``"replaced"`` (job ``id`` had not started and took the add's name, data,
    options and delay) or ``"kept-next"`` (job ``id`` is active; the add runs after it, unless a
    newer add replaces it first).
    """

    id: str
    added: bool
    deduplicated: Literal["ignored", "replaced", "kept-next"] | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """How one active job ends.

    ``completed``/``failed`` are final and apply ``keep`` (retention of that state) in the same
    atomic step; ``retry`` puts the job back: ``delayed`` until ``retry_at``, or ``waiting`` when
    ``retry_at`` is not in the future.
    """

    job_id: str
    status: FinishStatus
    attempts_made: int
    finished_on: float
    returnvalue_json: str | None = None
    failed_reason: str | None = None
    stacktrace: str | None = None
    retry_at: float = 0.0
    keep: Keep = field(default_factory=Keep)


@dataclass(frozen=True, slots=True)
class FinishResult:
    lost: list[str]  # ids this worker no longer owned (lease expired and the job moved on)
    jobs: list[JobRecord]  # next jobs fetched in the same step


@dataclass(frozen=True, slots=True)
class Stalled:
    job_id: str
    failed: bool  # True: stalled more than max_stalls times, now failed; else back to waiting


@dataclass(slots=True)
class ScheduleRecord:
    """A repeatable job definition and the time of its next slot."""

    key: str
    name: str
    data_json: str
    opts: dict[str, Any]
    next_run: float
    every: float | None = None
    cron: str | None = None
    tz: str | None = None
    missed: str = "skip"
    grace: float | None = None
    created: float = 0.0

    def same_definition(self, other: ScheduleRecord) -> bool:
        return (self.every, self.cron, self.tz) == (other.every, other.cron, other.tz)


@dataclass(slots=True)
class WorkerInfo:
    """One live worker, as kept in the registry by its heartbeats.

    ``fetched``: when its fetch loop last succeeded (a fetch call returned, with jobs or not, or
    the worker was busy on every slot, so had no reason to fetch); 0 until the first. A worker
    alive but no longer consuming (e.g. stuck on a connection to a failed-over server) keeps
    heartbeating while ``fetched`` grows old: ``polyjobs health`` looks at it.
    """

    id: str
    queue: str
    host: str
    pid: int
    concurrency: int
    started: float
    last_seen: float = 0.0
    active: int = 0
    fetched: float = 0.0


@runtime_checkable
class Backend(Protocol):
    """The storage contract every queue backend implements."""

    url: str
    capabilities: frozenset[str]

    async def open(self) -> None:
        """Connect / create storage. Raise ``BackendUnavailableError`` with one clear line."""

    async def close(self) -> None:
        """Release every resource; idempotent; returns promptly even if the server is gone."""

    # -- producers -------------------------------------------------------------------------
    async def add(self, queue: str, jobs: Sequence[NewJob]) -> list[AddResult]:
        """Add jobs atomically each; a job whose id exists is not changed (``added=False``)."""

    # -- workers ---------------------------------------------------------------------------
    async def fetch(
        self, queue: str, token: str, limit: int, lease: float, block: float
    ) -> list[JobRecord]:
        """Promote due delayed jobs, then move up to ``limit`` ready jobs to ``active``, owned by
        ``token`` until ``now + lease``. Nothing while paused. When nothing is ready, wait up to
        ``block`` seconds for a wake-up (an add, a resume, a delayed job falling due) without
        busy polling, and try once more."""

    async def extend(
        self, queue: str, token: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        """Renew the leases of ``job_ids`` to ``now + lease``; return the ids not owned."""

    async def finish(
        self, queue: str, token: str, finishes: Sequence[Finish], fetch: int, lease: float
    ) -> FinishResult:
        """End active jobs owned by ``token`` (others are reported ``lost`` and left alone),
        apply retention, and fetch up to ``fetch`` next jobs (never blocking) in one step."""

    async def release(self, queue: str, token: str, job_ids: Sequence[str] | None) -> list[str]:
        """Hand jobs owned by ``token`` back to ``waiting`` (all of them when ``job_ids`` is
        None) without counting an attempt; return the ids released."""

    async def recover_stalled(self, queue: str, max_stalls: int) -> list[Stalled]:
        """Move active jobs whose lease expired back to ``waiting`` (``stalls`` + 1), or to
        ``failed`` once ``stalls`` would exceed ``max_stalls``."""

    async def update_progress(self, queue: str, job_id: str, progress_json: str) -> bool:
        """Store a job's progress; False when the job does not exist."""

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        """Append a log line (keeping the last ``keep``); return the number of lines kept."""

    # -- inspection ------------------------------------------------------------------------
    async def get_job(self, queue: str, job_id: str) -> JobRecord | None: ...

    async def get_logs(self, queue: str, job_id: str, start: int, end: int) -> list[str]:
        """Log lines ``start..end`` inclusive (negative indexes count from the end)."""

    async def list_jobs(self, queue: str, state: JobState, start: int, end: int) -> list[JobRecord]:
        """Jobs in ``state``, ``start..end`` inclusive: waiting in fetch order (with job
        groups: each group's in its order; which group comes next depends on the turns, so
        the order across groups is the backend's own), delayed by due time, active by start
        time, completed and failed newest first."""

    async def counts(self, queue: str) -> dict[str, int]:
        """Exact number of jobs in each of :data:`BASE_STATES` (and ``waiting-children`` with
        :data:`CAP_FLOWS`)."""

    async def queues(self) -> list[str]:
        """Names of the queues that hold jobs, schedules or workers."""

    # -- administration --------------------------------------------------------------------
    async def pause(self, queue: str) -> None: ...

    async def resume(self, queue: str) -> None: ...

    async def is_paused(self, queue: str) -> bool: ...

    async def drain(self, queue: str, delayed: bool) -> int:
        """Remove waiting jobs (and delayed ones when ``delayed``); return how many."""

    async def clean(self, queue: str, state: JobState, grace: float, limit: int) -> list[str]:
        """Remove up to ``limit`` (0: no limit) jobs in ``state`` older than ``grace`` seconds
        (by finish time, or creation time for unfinished states); active jobs are never
        removed."""

    async def remove(self, queue: str, job_id: str) -> bool:
        """Remove a job that is not active; False when it does not exist or is active."""

    async def retry(self, queue: str, job_id: str) -> bool:
        """Move a failed job back to ``waiting`` with its attempts reset."""

    async def promote(self, queue: str, job_id: str) -> bool:
        """Move a delayed job to ``waiting`` now."""

    async def obliterate(self, queue: str) -> None:
        """Remove the queue: every job, log, schedule, flag and registry entry."""

    # -- schedules -------------------------------------------------------------------------
    async def save_schedule(self, queue: str, schedule: ScheduleRecord) -> ScheduleRecord:
        """Create or replace a schedule, atomically. When the stored one has the same cadence
        (``same_definition``), its ``next_run`` is kept, so re-upserting from many processes
        never moves or repeats a slot. Return the record as stored."""

    async def get_schedules(self, queue: str) -> list[ScheduleRecord]: ...

    async def remove_schedule(self, queue: str, key: str) -> bool: ...

    async def advance_schedule(
        self, queue: str, key: str, expected_next: float, next_run: float, jobs: Sequence[NewJob]
    ) -> bool:
        """If the schedule's ``next_run`` still equals ``expected_next``, set it to ``next_run``
        and add ``jobs``, atomically; otherwise change nothing and return False. This
        compare-and-set is what makes any number of schedulers produce one job per slot."""

    # -- worker registry -------------------------------------------------------------------
    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Register or refresh a worker; it drops out of ``list_workers`` after ``ttl``."""

    async def unregister(self, queue: str, worker_id: str) -> None: ...

    async def list_workers(self, queue: str) -> list[WorkerInfo]: ...


@runtime_checkable
class RateLimitBackend(Protocol):
    """What a backend that declares :data:`CAP_RATE_LIMIT` adds to :class:`Backend`."""

    async def set_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        """Limit the queue to ``limit.max`` job starts in any window of ``limit.duration``
        seconds, counted across every worker and process (None: no limit). Enforced
        atomically by ``fetch`` and by the fetch part of ``finish``: a fetch takes no more jobs
        than the window allows and, when blocking, waits until the window lets one start.
        Jobs held back are simply not fetched (no attempt is counted)."""

    async def get_rate_limit(self, queue: str) -> RateLimit | None: ...

    async def hold(self, queue: str, until: float) -> None:
        """Start no job of ``queue`` before ``until`` (a processor's push-back, e.g. an HTTP
        429 for the whole queue); a later hold extends, an earlier one changes nothing."""


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A command for every process sharing a backend (e.g. ``stop``)."""

    at: float  # when it was sent (epoch seconds); also its order
    command: str
    payload_json: str


@runtime_checkable
class ControlBackend(Protocol):
    """What a backend that declares :data:`CAP_CONTROL` adds to :class:`Backend`."""

    async def send_control(self, command: str, payload_json: str) -> ControlMessage:
        """Store a command for every process sharing this backend (not tied to a queue);
        keep at least the last 100. Return it as stored."""

    async def control_messages(self, since: float) -> list[ControlMessage]:
        """Commands sent after ``since`` (epoch seconds), oldest first."""


@runtime_checkable
class ConcurrencyBackend(Protocol):
    """What a backend that declares :data:`CAP_GLOBAL_CONCURRENCY` adds to :class:`Backend`."""

    async def set_global_concurrency(self, queue: str, limit: int | None) -> None:
        """Let at most ``limit`` jobs of ``queue`` be ``active`` at once, across every worker,
        process and machine (None: no cap). Enforced atomically by ``fetch`` and by the fetch
        part of ``finish``: a take moves no more than ``limit`` minus the active jobs (a job
        whose worker died counts until its lease expires and the stall sweep moves it). A
        fetch that finds the cap full waits (as for an empty queue) and looks again within
        about a second, or sooner when a job of the queue ends. Lowering the cap stops no
        running job; it only holds back new ones."""

    async def get_global_concurrency(self, queue: str) -> int | None: ...


@runtime_checkable
class GroupBackend(Protocol):
    """What a backend that declares :data:`CAP_GROUPS` adds to :class:`Backend`.

    A job added with :attr:`NewJob.group` belongs to that group for its whole life (its
    ``opts["group"]`` says which). ``fetch`` and the fetch part of ``finish`` take waiting
    jobs group by group in turns: the ready groups form a ring, least recently served
    first (a group never served, or whose last turn was longest ago, comes first; ties by
    name, the jobs without a group first); each turn takes the group's first job by
    priority and order, then the group goes to the end of the ring. The jobs without a
    group together take turns as one member of the ring. So a group holding far more jobs
    than the others delays each of theirs by at most one of its own per round.

    A group is skipped (not ready) while it is held (:meth:`hold_group`), while it has
    ``group_concurrency`` active jobs (a job whose worker died counts until the stall sweep
    moves it), and while its ``group_rate_limit`` window is full; the other groups go on.
    All of it is enforced atomically, across every worker, process and machine, together
    with the queue's own pause, hold, rate limit and global concurrency cap. A fetch that
    finds only held or full groups waits and looks again when the first hold ends, or soon
    after a job of the queue ends.
    """

    async def set_group_concurrency(self, queue: str, limit: int | None) -> None:
        """At most ``limit`` active jobs per group of ``queue`` (None: no cap)."""

    async def get_group_concurrency(self, queue: str) -> int | None: ...

    async def set_group_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        """At most ``limit.max`` starts of each group in any ``limit.duration`` seconds."""

    async def get_group_rate_limit(self, queue: str) -> RateLimit | None: ...

    async def hold_group(self, queue: str, group: str, until: float) -> None:
        """Start no job of ``group`` before ``until`` (a processor's push-back for that group
        alone); a later hold extends, an earlier one changes nothing."""


#: What :meth:`CancelBackend.cancel` did: the job ``failed`` at once (it had not started), or it
#: is active and its owner is ``requested`` to stop it.
CancelOutcome = Literal["failed", "requested"]


@runtime_checkable
class CancelBackend(Protocol):
    """What a backend that declares :data:`CAP_CANCEL` adds to :class:`Backend`.

    A cancel request is stored on the job itself (not sent as a message): whichever worker,
    process or machine owns the job, now or after a stall or a release hands it on, finds it
    with :meth:`cancel_requests`, so no request is lost to a race with ``fetch``.
    """

    async def cancel(
        self, queue: str, job_id: str, reason: str, now: float
    ) -> CancelOutcome | None:
        """Atomically: a ``waiting`` or ``delayed`` job fails now (``failed_reason`` ``reason``,
        ``finished_on`` ``now``, attempts unchanged, no retry) as any final failure does (its
        parents' failure policy applies, its deduplication window ends): ``"failed"``. An
        ``active`` job keeps running with ``reason`` stored as its cancel request (a later
        cancel replaces it; ``retry`` of the failed job clears it): ``"requested"``. Any other
        job (finished, waiting for children, missing): None, nothing changed."""

    async def cancel_requests(self, queue: str, job_ids: Sequence[str]) -> dict[str, str]:
        """The reasons of the cancel requests stored on those of ``job_ids`` that have one."""


@runtime_checkable
class LocalFileBackend(Protocol):
    """A backend whose storage is one local file at ``path``, created by ``open()`` when it
    does not exist. Commands that only look (``polyjobs stats``) check ``path`` first, so that
    a mistyped path is reported instead of created."""

    path: Path


@runtime_checkable
class StorageCreatingBackend(Protocol):
    """A backend whose ``open()`` creates its storage on a server where there is none, and
    brings an older one to its version (a PostgreSQL schema). Commands that only look or change
    what exists (``polyjobs stats``, ``jobs``, ``queue pause``) set ``create_storage`` False
    before ``open()``: a missing or older storage is then refused with one line
    (``ConfigError``) and left exactly as it was."""

    create_storage: bool


def controller(backend: Backend) -> ControlBackend:
    """The backend's control channel, or ``ConfigError`` naming the backend."""
    if CAP_CONTROL not in backend.capabilities or not isinstance(backend, ControlBackend):
        raise ConfigError(f"the backend {redact_url(backend.url)} has no control channel")
    return backend


def concurrency_of(backend: Backend) -> ConcurrencyBackend:
    """The backend's fleet-wide concurrency interface, or ``ConfigError`` naming the backend."""
    if CAP_GLOBAL_CONCURRENCY not in backend.capabilities or not isinstance(
        backend, ConcurrencyBackend
    ):
        raise ConfigError(
            f"the backend {redact_url(backend.url)} does not support global concurrency"
        )
    return backend


def groups_of(backend: Backend) -> GroupBackend:
    """The backend's group interface, or ``ConfigError`` naming the backend."""
    if CAP_GROUPS not in backend.capabilities or not isinstance(backend, GroupBackend):
        raise ConfigError(
            f"the backend {redact_url(backend.url)} does not support job groups "
            "(memory, SQLite, Redis and PostgreSQL do)"
        )
    return backend


def canceller(backend: Backend) -> CancelBackend:
    """The backend's cancel interface, or ``ConfigError`` naming the backend."""
    if CAP_CANCEL not in backend.capabilities or not isinstance(backend, CancelBackend):
        raise ConfigError(f"the backend {redact_url(backend.url)} cannot cancel jobs")
    return backend


def rate_limiter(backend: Backend) -> RateLimitBackend:
    """The backend's rate-limit interface, or ``ConfigError`` naming the backend."""
    if CAP_RATE_LIMIT not in backend.capabilities or not isinstance(backend, RateLimitBackend):
        raise ConfigError(f"the backend {redact_url(backend.url)} does not support rate limits")
    return backend


# -- flows ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, order=True)
class JobRef:
    """A job of some queue; ``str(ref)`` is its key, ``"<queue>:<id>"``."""

    queue: str
    id: str

    def __str__(self) -> str:
        return f"{self.queue}:{self.id}"


@dataclass(frozen=True, slots=True)
class FlowNode:
    """One job of a flow added by :meth:`FlowBackend.add_flow`.

    ``job`` None makes the node a reference to the existing job ``job_id`` of ``queue``. A
    node whose ``job.job_id`` already exists becomes such a reference too (nothing of it is
    changed). ``children`` are indexes of earlier nodes of the same call: every child comes
    before its parents, so the nodes are in topological order and hold no cycle. ``policy``
    says what a failure of this job (when final) does to each of its parents.
    """

    queue: str
    job: NewJob | None
    job_id: str | None = None
    children: tuple[int, ...] = ()
    policy: FailurePolicy = "wait"


@dataclass(frozen=True, slots=True)
class Dependencies:
    """A parent's children: ``processed`` (completed: their return values), ``pending`` (not
    yet done: their state now, e.g. ``failed`` while the parent waits for a retry) and
    ``ignored`` (failed with ``ignore_dependency_on_failure`` or
    ``continue_parent_on_failure``: their failure reasons)."""

    processed: dict[JobRef, Any] = field(default_factory=dict)
    pending: dict[JobRef, JobState | None] = field(default_factory=dict)
    ignored: dict[JobRef, str] = field(default_factory=dict)


@runtime_checkable
class FlowBackend(Protocol):
    """What a backend that declares :data:`CAP_FLOWS` adds to :class:`Backend`.

    A parent waits in ``waiting-children`` (in ``counts``, ``list_jobs`` and ``clean``) until
    none of its children is pending; it then moves to ``waiting`` (to ``delayed`` when it has
    a delay, counted from that moment), in the same atomic step as the finish, removal or
    stall that ended its last pending child, waking its queue. A job may have several parents
    (each waits for it, and each keeps its return value). Every transition keeps the edges
    consistent:

    * a child that completes: each parent waiting for it keeps its return value;
    * a child that fails for good (``finish`` or ``recover_stalled``), by its ``policy``:
      ``wait`` (default): the parent keeps waiting (a ``retry`` of the child may still
      complete it); ``fail``: a parent still in ``waiting-children`` fails, and its own policy
      applies to its parents in turn; ``ignore``: the child counts as done, its reason kept in
      ``ignored``; ``remove``: the child counts as done and is forgotten; ``continue``: the
      parent moves on at once, the reason kept in ``ignored``;
    * a job removed in any way (``remove``, ``clean``, ``drain``, retention, ``obliterate``):
      as a parent it forgets its children; as a pending child it is forgotten by its parents,
      except a failed child, whose removal fails the parents still waiting for it (nothing
      could complete it any more). Kept return values and reasons outlive the child.
    """

    async def add_flow(self, nodes: Sequence[FlowNode]) -> list[AddResult]:
        """Add the nodes (in several queues) and their edges, all or nothing: a node with
        children starts in ``waiting-children`` unless every child is already done. Raise
        ``InvalidArgumentError`` (nothing added) for a reference to a missing job or for
        children given to a job that already exists."""

    async def get_dependencies(self, queue: str, job_id: str) -> Dependencies:
        """The children of a job (empty for a job without children or a missing one)."""

    async def get_parents(self, queue: str, job_id: str) -> list[JobRef]:
        """The parents of a job that still exist, in no particular order."""


@runtime_checkable
class DedupBackend(Protocol):
    """What a backend that declares :data:`CAP_DEDUP` adds to :class:`Backend`.

    ``add`` (and ``advance_schedule``) honour :attr:`NewJob.dedup` atomically: a queue's
    deduplication id is held by one job, from the add that created it until that job ends
    (completed or failed for good; with a ``ttl``: until ``ttl`` seconds after the add, which
    ``extend`` restarts on every absorbed add). An add whose id is held is absorbed (see
    :class:`AddResult`); a held id whose job was removed is free again.
    ``keep_last_if_active`` keeps the newest absorbed add while the holder is active and adds
    it as a new job (the new holder) when the holder ends.
    """

    async def get_deduplication(self, queue: str, dedup_id: str) -> str | None:
        """The id of the job holding ``dedup_id``, or None when it is free."""

    async def remove_deduplication(self, queue: str, dedup_id: str) -> bool:
        """Free ``dedup_id`` (and drop a kept next add); False when it was not held."""


# -- stored metrics -------------------------------------------------------------------------
#: How long a backend with :data:`CAP_METRICS` keeps a minute (before its newest write).
METRICS_KEEP = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class MinuteMetrics:
    """One minute of a queue: the jobs that ended ``completed`` and ``failed`` (for good) in
    it, and ``time_sum``, the seconds from ``processed_on`` to ``finished_on`` of those jobs."""

    minute: float  # its start, epoch seconds (a multiple of 60)
    completed: int = 0
    failed: int = 0
    time_sum: float = 0.0


@runtime_checkable
class MetricsBackend(Protocol):
    """What a backend that declares :data:`CAP_METRICS` adds to :class:`Backend`.

    ``finish`` counts every job it ends ``completed`` or ``failed`` in the minute of its
    ``finished_on`` (``floor(finished_on / 60) * 60``), with its processing time, in the same
    atomic step as the finish (as BullMQ, jobs failed by the stalled-job check are not
    counted: they have no processing time). Minutes more than :data:`METRICS_KEEP` seconds
    older than the newest counted minute are forgotten; ``obliterate`` forgets them all. So
    the figures are right after a restart and across any number of workers.
    """

    async def get_metrics(self, queue: str, since: float) -> list[MinuteMetrics]:
        """The counted minutes from the one holding ``since`` on, oldest first."""


def minute_of(t: float) -> float:
    """The start of the minute holding ``t``."""
    return float(int(t // 60) * 60)


def count_finish(row: list[float], fin: Finish, processed_on: float | None) -> None:
    """Add a final finish to a minute's ``[completed, failed, time_sum]`` (for backends that
    count in Python)."""
    row[0 if fin.status == "completed" else 1] += 1
    row[2] += max(fin.finished_on - (processed_on or fin.finished_on), 0.0)


def metrics_of(backend: Backend) -> MetricsBackend | None:
    """The backend's metrics interface, or None when it keeps no metrics."""
    if CAP_METRICS in backend.capabilities and isinstance(backend, MetricsBackend):
        return backend
    return None


def flows_of(backend: Backend) -> FlowBackend:
    """The backend's flow interface, or ``ConfigError`` naming the backend."""
    if CAP_FLOWS not in backend.capabilities or not isinstance(backend, FlowBackend):
        raise ConfigError(f"the backend {redact_url(backend.url)} does not support flows")
    return backend


def deduplicator(backend: Backend) -> DedupBackend:
    """The backend's deduplication interface, or ``ConfigError`` naming the backend."""
    if CAP_DEDUP not in backend.capabilities or not isinstance(backend, DedupBackend):
        raise ConfigError(
            f"the backend {redact_url(backend.url)} does not support deduplication windows"
        )
    return backend


_Item = TypeVar("_Item")


def inclusive_range(items: Sequence[_Item], start: int, end: int) -> list[_Item]:
    """``items[start..end]`` with ``end`` included and negative indexes counting from the
    end, as ``get_logs`` and ``list_jobs`` take them (Redis' ``LRANGE``)."""
    n = len(items)
    if start < 0:
        start = max(n + start, 0)
    if end < 0:
        end = n + end
    return list(items[start : end + 1])
