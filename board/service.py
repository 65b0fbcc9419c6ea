"""What the board shows and does, over the library API only: the one layer under the JSON API
and the pages, so that both say the same thing and work on every backend."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from polyjobs.backend import STATES
from polyjobs.errors import InvalidArgumentError, JobNotFoundError
from polyjobs.flow import family
from polyjobs.options import seconds
from polyjobs.queue import Queue, check_queue_name, check_state
from polyjobs.redact import redact_value
from polyjobs.stats import queue_stats

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.board.options import BoardOptions
    from polyjobs.job import Job
    from polyjobs.runtime import QueueSpec

MAX_PAGE = 200
MAX_START = 2**31 - 1
MAX_LOG_LINES = 200
ENQUEUE_OPTIONS = ("delay", "priority", "job_id", "attempts")


def redact(value: Any) -> Any:
    """``value`` as the board shows it: :func:`polyjobs.redact.redact_value`."""
    return redact_value(value)


def job_dict(job: Job) -> dict[str, Any]:
    """A job as the board shows it: every field, strings redacted, plus its duration."""
    out: dict[str, Any] = redact(job.to_dict())
    if job.processed_on is not None and job.finished_on is not None:
        out["duration"] = max(job.finished_on - job.processed_on, 0.0)
    else:
        out["duration"] = None
    return out


class BoardService:
    """The board's reads and actions on one backend."""

    def __init__(self, backend: Backend, options: BoardOptions) -> None:
        self.backend = backend
        self.options = options

    # -- queues ----------------------------------------------------------------------------
    async def queue_names(self) -> list[str]:
        """The registered queues, then every other queue the backend holds."""
        names = list(self.options.specs)
        return names + sorted(n for n in await self.backend.queues() if n not in names)

    def spec(self, name: str) -> QueueSpec | None:
        specs = self.options.specs
        if name in specs:
            return specs[name]
        return next((s for s in specs.values() if s.short_name == name), None)

    def queue(self, name: str) -> Queue:
        """A ``Queue`` for ``name`` (with its spec's defaults and validation when registered)."""
        spec = self.spec(name)
        return spec.make_queue(self.backend) if spec is not None else Queue(name, self.backend)

    async def listing(self, key: str, offset: int, limit: int) -> dict[str, Any]:
        """One page of an application's read-only listing, redacted like everything shown."""
        found = self.options.listings.get(key)
        if found is None:
            raise JobNotFoundError(f"no listing {key!r}")
        offset = min(max(offset, 0), MAX_START)
        limit = min(max(limit, 1), 500)
        page = await found.fetch(self.options.settings, offset, limit)
        keys = [c.key for c in found.columns]
        return {
            "key": found.key,
            "title": found.title,
            "description": found.description,
            "columns": [{"title": c.title, "key": c.key, "kind": c.kind} for c in found.columns],
            "rows": [redact({k: row.get(k) for k in keys}) for row in page.rows],
            "total": page.total,
            "offset": offset,
            "limit": limit,
        }

    async def known_queue(self, name: str) -> Queue:
        """``queue(name)`` for a queue that is registered or holds jobs; else 404."""
        check_queue_name(name)
        if self.spec(name) is None and name not in await self.backend.queues():
            raise JobNotFoundError(f"no queue {name!r}")
        return self.queue(name)

    async def overview(self) -> list[dict[str, Any]]:
        """Per queue: counts, paused, workers, last-minute throughput, registration."""
        rows = []
        for stats in await queue_stats(self.backend, await self.queue_names()):
            row = stats.to_dict()
            spec = self.spec(stats.queue)
            row["registered"] = spec is not None
            row["description"] = spec.description if spec is not None else ""
            rows.append(row)
        return rows

    async def queue_info(self, name: str) -> dict[str, Any]:
        queue = await self.known_queue(name)
        row = (await queue_stats(self.backend, [queue.name]))[0].to_dict()
        spec = self.spec(queue.name)
        row["registered"] = spec is not None
        row["description"] = spec.description if spec is not None else ""
        row["short_name"] = spec.short_name if spec is not None else None
        row["defaults"] = redact(queue.default_options.to_json())
        return row

    async def jobs(self, name: str, state: str, start: int, limit: int) -> dict[str, Any]:
        """One page of a queue's jobs in ``state`` and the total in that state."""
        queue = await self.known_queue(name)
        state = check_state(state)
        start = min(max(start, 0), MAX_START)  # past the last job: an empty page, not an error
        limit = min(max(limit, 1), MAX_PAGE)
        counts = await queue.counts()
        jobs = await queue.jobs(state, start, start + limit - 1)
        return {
            "queue": queue.name,
            "state": state,
            "start": start,
            "limit": limit,
            "total": counts[state],
            "counts": {s: counts[s] for s in STATES},
            "paused": bool(counts["paused"]),
            "jobs": [job_dict(j) for j in jobs],
        }

    async def job(self, name: str, job_id: str) -> dict[str, Any]:
        """One job with its logs (the last lines), redacted."""
        queue = await self.known_queue(name)
        job = await queue.require_job(job_id)
        out = job_dict(job)
        out["logs"] = redact(await queue.logs(job.id, -MAX_LOG_LINES, -1))
        relatives = await family(job)  # states only: children's values may hold anything
        for key in ("parents", "children"):
            out[key] = [{k: r[k] for k in ("queue", "id", "state")} for r in relatives[key]]
        return out

    # -- actions ---------------------------------------------------------------------------
    async def job_action(self, name: str, job_id: str, action: str) -> bool:
        """``retry``, ``remove``, ``promote`` or ``cancel`` one job; False when its state
        forbids it."""
        queue = await self.known_queue(name)
        await queue.require_job(job_id)
        if action == "cancel":
            return await queue.cancel(job_id, "cancelled from the board") is not None
        if action == "retry":
            return await queue.retry(job_id)
        if action == "remove":
            return await queue.remove(job_id)
        if action == "promote":
            return await queue.promote(job_id)
        raise InvalidArgumentError(f"unknown job action {action!r}")

    async def set_paused(self, name: str, paused: bool) -> None:
        queue = await self.known_queue(name)
        await (queue.pause() if paused else queue.resume())

    async def clean(self, name: str, state: str, grace: Any, limit: Any) -> int:
        """Remove finished (or waiting/delayed) jobs older than ``grace``; return how many."""
        queue = await self.known_queue(name)
        if check_state(state) == "active":
            raise InvalidArgumentError("active jobs cannot be cleaned")
        removed = await queue.clean(state, seconds(grace or 0, "grace"), _int(limit or 0, "limit"))
        return len(removed)

    async def enqueue(
        self, name: str, job_name: str | None, data: Any, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Add one job (validated by the queue's spec when registered)."""
        queue = self.queue(check_queue_name(name))
        unknown = set(options) - set(ENQUEUE_OPTIONS)
        if unknown:
            raise InvalidArgumentError(f"unknown job options: {', '.join(sorted(unknown))}")
        opts = {k: v for k, v in options.items() if v not in (None, "")}
        if "delay" in opts:
            opts["delay"] = seconds(opts["delay"], "delay")
        for key in ("priority", "attempts"):
            if key in opts:
                opts[key] = _int(opts[key], key)
        job = await queue.add(job_name or queue.name, {} if data is None else data, **opts)
        return {"queue": queue.name, "id": job.id, "state": job.state}


def _int(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # its bounds are the job options' to check
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"{what} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise InvalidArgumentError(f"{what} must be a whole number, got {value!r}")
    return int(number)
