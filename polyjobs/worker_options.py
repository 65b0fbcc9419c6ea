"""``WorkerOptions``: how a worker runs (concurrency, leases, intervals, sandbox)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from polyjobs.errors import InvalidArgumentError
from polyjobs.options import seconds


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker runs. Durations are seconds.

    Attributes:
        concurrency: jobs processed at once.
        lease: seconds a job stays owned without renewal; renewed every ``lease / 3``.
        stalled_interval: how often to look for jobs whose lease expired.
        max_stalls: how often a job may stall before it fails.
        block: the longest a fetch waits for a wake-up before asking again.
        heartbeat_interval: how often the worker refreshes its registry entry.
        timeout: default timeout for jobs that set none (None: no timeout).
        schedule: run the queue's repeatable-job scheduler in this worker.
        schedule_refresh: the longest the scheduler sleeps before re-reading schedules.
        sandbox: run a plain (sync) processor in a pool of child processes, so that a
            timeout kills it and a crash fails only its job (:mod:`polyjobs.sandbox`).
        sandbox_max_jobs: replace a sandbox child after this many jobs (None: never).
        cancel_interval: how often, while it runs jobs, the worker asks the backend whether
            one of them was cancelled (``Queue.cancel``); one read per interval.
    """

    concurrency: int = 1
    lease: float = 30.0
    stalled_interval: float = 30.0
    max_stalls: int = 1
    block: float = 30.0
    heartbeat_interval: float = 10.0
    timeout: float | None = None
    schedule: bool = True
    schedule_refresh: float = 15.0
    sandbox: bool = False
    sandbox_max_jobs: int | None = None
    cancel_interval: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise InvalidArgumentError(f"concurrency must be an integer, got {self.concurrency!r}")
        if self.concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_stalls < 0:
            raise InvalidArgumentError(f"max_stalls must be >= 0, got {self.max_stalls}")
        for name in ("lease", "stalled_interval", "block", "heartbeat_interval", "cancel_interval"):
            if seconds(getattr(self, name), name) <= 0:
                raise InvalidArgumentError(f"{name} must be > 0 seconds")

    @classmethod
    def build(cls, base: WorkerOptions | None = None, **overrides: Any) -> WorkerOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise InvalidArgumentError(f"unknown worker options: {', '.join(sorted(unknown))}")
        durations = {
            "lease",
            "stalled_interval",
            "block",
            "heartbeat_interval",
            "schedule_refresh",
            "cancel_interval",
        }
        for name in durations & set(overrides):
            overrides[name] = seconds(overrides[name], name)
        if overrides.get("timeout") is not None:
            overrides["timeout"] = seconds(overrides["timeout"], "timeout")
        return replace(base or cls(), **overrides)
