"""Queue statistics as plain data: what ``polyjobs stats`` prints and a board would show."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from polyjobs.backend import metrics_of, minute_of
from polyjobs.queue import Queue

if TYPE_CHECKING:
    from polyjobs.backend import Backend, MinuteMetrics

RECENT_SCAN = 500


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's numbers. ``*_last_minute``: the jobs finished in the last 60 s. On a backend
    that keeps metrics they come from them (the current minute plus the part of the previous
    one still inside the 60 s, pro rata), as do the ``*_last_hour`` figures, right after any
    restart and for any number of workers. Elsewhere they count the retained jobs, and
    ``recent_capped`` says the retained history was exhausted, so they are lower bounds."""

    queue: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    paused: bool
    workers: int
    completed_last_minute: int
    failed_last_minute: int
    recent_capped: bool
    waiting_children: int = 0  # parents waiting for their children (flows)
    # from the metrics the backend keeps (None on a backend without them): the last 60 minutes
    completed_last_hour: int | None = None
    failed_last_hour: int | None = None
    avg_time_last_hour: float | None = None  # seconds of processing per finished job

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def queue_stats(backend: Backend, names: Iterable[str]) -> list[QueueStats]:
    """Counts, pause flag, live workers and last-minute throughput of each queue."""
    out = []
    now = time.time()
    stored = metrics_of(backend)
    for name in names:
        queue = Queue(name, backend)
        counts = await queue.counts()
        workers = await queue.workers()
        hour: dict[str, Any] = {}
        if stored is not None:
            minutes = await stored.get_metrics(name, now - 3600)
            done, failed = _last_minute(minutes, now)
            done_capped = failed_capped = False
            hour = _last_hour(minutes, now)
        else:
            done, done_capped = await _recent(queue, "completed", now)
            failed, failed_capped = await _recent(queue, "failed", now)
        out.append(
            QueueStats(
                queue=name,
                waiting=counts["waiting"],
                active=counts["active"],
                delayed=counts["delayed"],
                waiting_children=counts["waiting-children"],
                completed=counts["completed"],
                failed=counts["failed"],
                paused=bool(counts["paused"]),
                workers=len(workers),
                completed_last_minute=done,
                failed_last_minute=failed,
                recent_capped=done_capped or failed_capped,
                **hour,
            )
        )
    return out


async def _recent(queue: Queue, state: str, now: float) -> tuple[int, bool]:
    """Finished jobs of the last minute among the newest retained ones (newest first)."""
    jobs = await queue.jobs(state, 0, RECENT_SCAN - 1)
    recent = [j for j in jobs if (j.finished_on or 0) >= now - 60]
    # Every retained job is recent: older ones may have been trimmed by retention.
    return len(recent), bool(jobs) and len(recent) == len(jobs)


def _last_minute(minutes: list[MinuteMetrics], now: float) -> tuple[int, int]:
    """Completed and failed in the last 60 s: the current minute, plus the previous one
    weighted by how much of it lies inside the 60 s."""
    current = minute_of(now)
    weight = 1.0 - (now - current) / 60.0
    done = failed = 0.0
    for m in minutes:
        share = 1.0 if m.minute == current else weight if m.minute == current - 60 else 0.0
        done += m.completed * share
        failed += m.failed * share
    return round(done), round(failed)


def _last_hour(minutes: list[MinuteMetrics], now: float) -> dict[str, Any]:
    inside = [m for m in minutes if m.minute > minute_of(now) - 3600]
    done = sum(m.completed for m in inside)
    failed = sum(m.failed for m in inside)
    spent = sum(m.time_sum for m in inside)
    return {
        "completed_last_hour": done,
        "failed_last_hour": failed,
        "avg_time_last_hour": spent / (done + failed) if done + failed else None,
    }
