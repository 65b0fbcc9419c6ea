"""How a job's run becomes a :class:`~polyjobs.backend.Finish`: completed, retried or failed."""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from polyjobs import codec
from polyjobs.backend import Finish
from polyjobs.errors import RetryAfter, UnrecoverableError

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.job import Job
    from polyjobs.options import JobOptions


def completed(job: Job, opts: JobOptions, result: Any) -> Finish:
    """The job returned ``result`` (it must be JSON)."""
    text = "null" if result is None else codec.encode(result, f"result of job {job.id}")
    # positional, in Finish's field order: a frozen dataclass takes keywords ~1 µs slower,
    # and this runs for every job
    attempts, now = job.attempts_made + 1, time.time()
    return Finish(
        job.id, "completed", attempts, now, text, None, None, 0.0, opts.remove_on_complete
    )


def failure(job: Job, opts: JobOptions, exc: BaseException) -> Finish:
    """The job raised ``exc``: retry after the backoff (or ``RetryAfter``'s delay) while
    attempts are left, else fail; ``UnrecoverableError`` fails at once."""
    attempts = job.attempts_made + 1
    now = time.time()
    reason = str(exc) or type(exc).__name__
    stack = getattr(exc, "stack", None) or "".join(traceback.format_exception(exc))
    if isinstance(exc, UnrecoverableError) or attempts >= opts.attempts:
        return Finish(
            job.id, "failed", attempts, now, None, reason, stack, keep=opts.remove_on_fail
        )
    delay = exc.seconds if isinstance(exc, RetryAfter) else opts.backoff.delay_for(attempts)
    return Finish(job.id, "retry", attempts, now, None, reason, stack, retry_at=now + delay)


async def applied_before(
    backend: Backend, queue: str, finishes: Sequence[Finish], suspects: set[str]
) -> set[str]:
    """Of finishes sent again after a failed call, those the backend had already applied (the
    reply was lost, not the finish): the job is where that finish put it."""
    expected = {"completed": ("completed",), "failed": ("failed",)}
    applied = set()
    for fin in finishes:
        if fin.job_id not in suspects:
            continue
        try:
            record = await backend.get_job(queue, fin.job_id)
        except Exception:
            continue
        if record is None:
            if fin.status != "retry" and fin.keep.removes_at_once:
                applied.add(fin.job_id)
            continue
        states = expected.get(fin.status, ("waiting", "delayed", "active"))
        if record.state in states and record.attempts_made == fin.attempts_made:
            applied.add(fin.job_id)
    return applied
