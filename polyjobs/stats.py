"""Queue statistics as plain data: what ``polyjobs stats`` prints and a board would show."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from polyjobs.queue import Queue

if TYPE_CHECKING:
    from polyjobs.backend import Backend

RECENT_SCAN = 500


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's numbers. ``*_last_minute`` count the retained jobs that finished in the last
    60 s; ``recent_capped`` says the retained history was exhausted, so they are lower bounds."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def queue_stats(backend: Backend, names: Iterable[str]) -> list[QueueStats]:
    """Counts, pause flag, live workers and last-minute throughput of each queue."""
    out = []
    now = time.time()
    for name in names:
        queue = Queue(name, backend)
        counts = await queue.counts()
        workers = await queue.workers()
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
            )
        )
    return out


async def _recent(queue: Queue, state: str, now: float) -> tuple[int, bool]:
    """Finished jobs of the last minute among the newest retained ones (newest first)."""
    jobs = await queue.jobs(state, 0, RECENT_SCAN - 1)
    recent = [j for j in jobs if (j.finished_on or 0) >= now - 60]
    # Every retained job is recent: older ones may have been trimmed by retention.
    return len(recent), bool(jobs) and len(recent) == len(jobs)
