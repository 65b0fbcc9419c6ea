"""Health that tells the truth: is the backend reachable, is every expected queue consumed?

Workers can be alive (heartbeating, listed) and yet no longer consuming, e.g. stuck on a
connection to a server that failed over. So a queue is healthy when it has a live worker whose
fetch loop succeeded within ``fetch_age`` seconds (:attr:`WorkerInfo.fetched`), and when the job
next in line has not waited longer than ``max_age``. ``polyjobs health`` prints these checks
and exits 0/1 (a container probe); ``polyjobs stats`` and the board show the one-line verdict.

The waiting check looks at the job next in line (the one a worker takes next), not at every
waiting job: in a queue with priorities an old low-priority job behind newer ones means the
queue is busy, not that nobody consumes it, and the head is one cheap read on every backend.
A paused queue passes both checks (nobody is meant to consume it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from polyjobs.errors import BackendError

if TYPE_CHECKING:
    from polyjobs.backend import Backend

#: Default for ``fetch_age``: more than a worker's default ``block`` (30 s, the longest an idle
#: fetch waits before it returns) plus a heartbeat interval (10 s) and some slack.
FETCH_AGE = 90.0
#: Default for ``max_age`` of the job next in line.
MAX_AGE = 300.0


@dataclass(frozen=True, slots=True)
class Check:
    """One check: what was checked, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Health:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def verdict(self) -> str:
        """One line: ``healthy (...)`` or ``UNHEALTHY: <failed checks>``."""
        failed = [c for c in self.checks if not c.ok]
        if not failed:
            queues = sum(c.name.endswith(" workers") for c in self.checks)
            if not queues:
                return "healthy (no queue yet)"
            return f"healthy ({queues} queue{'' if queues == 1 else 's'} checked)"
        return "UNHEALTHY: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verdict": self.verdict(),
            "checks": [asdict(c) for c in self.checks],
        }


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


async def check_health(
    backend: Backend,
    queues: list[str] | None = None,
    *,
    fetch_age: float = FETCH_AGE,
    max_age: float = MAX_AGE,
    location: str = "",
) -> Health:
    """The checks of ``queues`` (None: every queue the backend knows)."""
    where = f" {location}" if location else ""
    checks: list[Check] = []
    try:
        names = list(queues) if queues is not None else await backend.queues()
        # one read that needs the server, whatever the queues
        if queues is not None and not names:
            await backend.queues()
    except (BackendError, OSError) as exc:
        return Health([Check(f"backend{where}", False, f"unreachable: {exc}")])
    checks.append(Check(f"backend{where}", True, "reachable"))
    if not names:
        checks.append(Check("queues", True, "none yet"))
        return Health(checks)
    now = time.time()
    try:
        for name in names:
            checks += await _queue_checks(backend, name, now, fetch_age, max_age)
    except (BackendError, OSError) as exc:
        return Health([Check(f"backend{where}", False, f"unreachable: {exc}")])
    return Health(checks)


async def _queue_checks(
    backend: Backend, name: str, now: float, fetch_age: float, max_age: float
) -> list[Check]:
    if await backend.is_paused(name):
        return [Check(f"queue {name} workers", True, "paused: not checked")]
    workers = await backend.list_workers(name)
    fresh = [w for w in workers if now - w.fetched <= fetch_age]
    if fresh:
        last = now - max(w.fetched for w in fresh)
        n = len(fresh)
        worker = Check(
            f"queue {name} workers",
            True,
            f"{n} worker{'' if n == 1 else 's'} fetching (last fetch {_ago(max(last, 0))} ago)",
        )
    elif workers:
        newest = max(w.fetched for w in workers)
        seen = f"last fetch {_ago(now - newest)} ago" if newest else "none has fetched yet"
        n = len(workers)
        worker = Check(
            f"queue {name} workers",
            False,
            f"{n} live worker{'' if n == 1 else 's'}, none fetched in the last "
            f"{_ago(fetch_age)} ({seen})",
        )
    else:
        worker = Check(f"queue {name} workers", False, "no live worker")
    head = await backend.list_jobs(name, "waiting", 0, 0)
    if not head:
        waiting = Check(f"queue {name} waiting", True, "nothing waiting")
    else:
        waited = max(now - max(head[0].timestamp, head[0].run_at), 0.0)
        waiting = Check(
            f"queue {name} waiting",
            waited <= max_age,
            f"the job next in line has waited {_ago(waited)} (limit {_ago(max_age)})",
        )
    return [worker, waiting]
