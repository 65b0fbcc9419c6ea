"""``QueueSpec``: everything polyjobs needs to run one queue, as plain data.

A spec names the queue, its processor, limits, retries, retention and schedule
(``ScheduleSpec``); an application declares its queues as specs (``polyjobs.App`` makes them),
a ``Runtime`` runs them. This module is data: it imports no worker, runtime or plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from polyjobs.options import KEEP_COMPLETED, KEEP_FAILED, Backoff, JobOptions, Keep, RateLimit
from polyjobs.queue import Queue, check_global_concurrency, check_queue_name
from polyjobs.worker_options import WorkerOptions

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.job import Job
    from polyjobs.telemetry import Telemetry

#: A job's processor: ``async def f(job)`` or a plain ``def f(job)`` (run in a thread).
Processor = Callable[["Job"], Any]


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A queue's repeatable job: ``every`` seconds or a ``cron`` pattern in ``tz``.

    ``options`` are the slot jobs' options (``priority``, ``attempts``, ``deduplication``...);
    ``no_overlap`` keeps at most one run waiting behind the active one however slow the runs
    are (a deduplication window on the schedule's key that keeps the last absorbed slot; on a
    backend without windows, a warning and every slot runs)."""

    key: str
    every: float | None = None
    cron: str | None = None
    tz: str | None = None
    name: str | None = None
    data: Any = None
    missed: str = "skip"
    options: Mapping[str, Any] | None = None
    no_overlap: bool = False

    def job_options(self, dedup: bool) -> dict[str, Any]:
        """The slot jobs' options on a backend with (``dedup``) or without windows."""
        options = dict(self.options or {})
        if self.no_overlap and dedup:
            options["deduplication"] = {"id": f"schedule:{self.key}", "keep_last_if_active": True}
        return options


@dataclass(frozen=True, slots=True)
class Retention:
    """How many finished jobs a queue keeps (``Keep`` for completed and for failed ones)."""

    completed: Keep = KEEP_COMPLETED
    failed: Keep = KEEP_FAILED


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """Everything polyjobs needs to run one queue: its processor, limits and schedule.

    ``validate(data)`` (optional) raises ``InvalidArgumentError`` for job data the processor
    cannot use, so that bad input is refused when it is added, not when it runs.
    ``rate_limit`` is applied to the queue when a Runtime starts (across every worker), and
    so is ``global_concurrency`` (at most that many of its jobs running at once, across every
    worker and machine; ``concurrency`` is per worker).
    ``group_concurrency`` and ``group_rate_limit`` cap each group of the queue's jobs
    (``Queue.add(..., group=...)``) the same way, per group, also from when a Runtime starts.
    ``sandbox`` runs a plain processor in child processes (hard timeouts, crash isolation).
    """

    name: str
    processor: Processor
    concurrency: int = 1
    timeout: float | None = None
    attempts: int = 1
    backoff: Backoff = field(default_factory=Backoff)
    schedule: ScheduleSpec | None = None
    retention: Retention = field(default_factory=Retention)
    short_name: str | None = None
    description: str = ""
    validate: Callable[[Any], None] | None = None
    rate_limit: RateLimit | None = None
    sandbox: bool = False
    global_concurrency: int | None = None
    group_concurrency: int | None = None
    group_rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        check_queue_name(self.name)
        check_global_concurrency(self.global_concurrency)
        check_global_concurrency(self.group_concurrency, "group concurrency")
        WorkerOptions(concurrency=self.concurrency)  # validates
        self.job_options()

    def job_options(self) -> JobOptions:
        """The default options of jobs added to this queue."""
        return JobOptions(
            attempts=self.attempts,
            backoff=self.backoff,
            timeout=self.timeout,
            remove_on_complete=self.retention.completed,
            remove_on_fail=self.retention.failed,
        )

    def make_queue(self, backend: Backend, telemetry: Telemetry | None = None) -> Queue:
        """This queue on ``backend``, with the spec's job defaults and data validation."""
        return Queue(
            self.name,
            backend,
            default_options=self.job_options(),
            validate=self.validate,
            telemetry=telemetry,
        )

    def with_changes(self, **changes: Any) -> QueueSpec:
        """A copy with some fields changed (e.g. concurrency from a CLI flag)."""
        return replace(self, **changes)
