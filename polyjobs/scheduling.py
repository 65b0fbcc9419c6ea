"""Repeatable jobs: when slots fall, and the scheduler loop that turns due slots into jobs.

A slot is an instant: a multiple of ``every`` since the epoch (so every process computes the
same slots), or a cron occurrence in a timezone. The job of a slot has the id
``sched:<key>:<slot in ms>``, and the backend's ``advance_schedule`` is a compare-and-set on the
schedule's ``next_run``: however many schedulers run, each slot produces one job.

A slot is *missed* when it is more than ``grace`` late (default: one period, at least 5 s and
at most 60 s): no scheduler was running when it fell. Slots that are late by less (a busy
machine, a scheduler that overslept) always run. Missed slots follow the schedule's ``missed``
policy: ``skip`` (default) drops them; ``once`` runs the latest missed slot once; ``all`` runs
every missed slot (at most :data:`MAX_CATCH_UP`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from polyjobs.backend import NewJob, ScheduleRecord
from polyjobs.errors import InvalidArgumentError
from polyjobs.options import JobOptions
from polyjobs.outage import OUTAGES

if TYPE_CHECKING:
    from croniter import croniter

    from polyjobs.backend import Backend

log = logging.getLogger(__name__)

MISSED_POLICIES = ("skip", "once", "all")
MAX_CATCH_UP = 100
DEFAULT_MIN_GRACE = 5.0
DEFAULT_MAX_GRACE = 60.0


@dataclass(frozen=True, slots=True)
class Cadence:
    """Either ``every`` seconds (aligned to the epoch) or a ``cron`` pattern in ``tz``.

    Cron patterns have 5 fields (minute hour day-of-month month day-of-week), or 6 with
    seconds first, as in BullMQ: ``*/5 * * * * *`` is every 5 seconds, ``30 0 * * * *`` half
    a minute past every hour.
    """

    every: float | None = None
    cron: str | None = None
    tz: str | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise InvalidArgumentError("a schedule needs exactly one of every= or cron=")
        if self.every is not None and round(self.every * 1000) < 1:
            raise InvalidArgumentError(f"every must be at least 1ms, got {self.every}")
        if self.cron is not None:
            _check_cron(self.cron)
        if self.tz is not None:
            if self.every is not None:
                raise InvalidArgumentError("tz= applies to cron schedules only")
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise InvalidArgumentError(f"unknown timezone {self.tz!r}") from exc

    def next_after(self, t: float) -> float:
        """The first slot strictly after ``t``."""
        if self.every is not None:
            step = round(self.every * 1000)
            return ((math.floor(t * 1000) // step) + 1) * step / 1000
        tz = ZoneInfo(self.tz or "UTC")
        assert self.cron is not None
        return float(_croniter(self.cron, datetime.fromtimestamp(t, tz)).get_next(float))

    def slots_between(self, first: float, last: float, limit: int) -> list[float]:
        """Slots in ``[first, last]``, ``first`` included when it is a slot; the latest
        ``limit`` of them."""
        if self.every is not None:
            step = round(self.every * 1000)
            lo = math.ceil(first * 1000 / step)
            hi = math.floor(last * 1000 / step)
            return [k * step / 1000 for k in range(max(lo, hi - limit + 1), hi + 1)]
        slots: list[float] = []
        t = self.next_after(first - 0.001)
        while t <= last:
            slots.append(t)
            if len(slots) > limit:
                slots.pop(0)
            t = self.next_after(t)
        return slots

    def period_at(self, t: float) -> float:
        nxt = self.next_after(t)
        return self.next_after(nxt) - nxt


def _seconds_first(cron: str) -> bool:
    return len(cron.split()) == 6


def _croniter(cron: str, start: datetime) -> croniter:
    from croniter import croniter  # imported with the first cron pattern, not by every command

    return croniter(cron, start, second_at_beginning=_seconds_first(cron))


def _check_cron(cron: str) -> None:
    """Refuse a pattern that is not 5 or 6 valid fields, or that never matches."""
    fields = len(cron.split())
    if fields not in (5, 6):
        raise InvalidArgumentError(
            f"invalid cron pattern {cron!r}: 5 fields (minute hour day month weekday), or 6 "
            f"with seconds first, got {fields}"
        )
    from croniter import CroniterError, croniter

    if not croniter.is_valid(cron, second_at_beginning=_seconds_first(cron)):
        raise InvalidArgumentError(f"invalid cron pattern {cron!r}")
    try:
        _croniter(cron, datetime.now(ZoneInfo("UTC"))).get_next(float)
    except (CroniterError, ValueError, OverflowError):
        raise InvalidArgumentError(f"cron pattern {cron!r} never matches") from None


def slot_job_id(key: str, slot: float) -> str:
    return f"sched:{key}:{round(slot * 1000)}"


def due_slots(schedule: ScheduleRecord, now: float) -> list[float]:
    """The slots of ``schedule`` to run now, by its missed-run policy."""
    cadence = Cadence(schedule.every, schedule.cron, schedule.tz)
    due = cadence.slots_between(schedule.next_run, now, MAX_CATCH_UP)
    grace = schedule.grace
    if grace is None:
        period = cadence.period_at(schedule.next_run)
        grace = min(max(period, DEFAULT_MIN_GRACE), DEFAULT_MAX_GRACE)
    on_time = [slot for slot in due if now - slot <= grace]
    missed = due[: len(due) - len(on_time)]
    if schedule.missed == "all":
        return missed + on_time
    if schedule.missed == "once" and missed and not on_time:
        return missed[-1:]
    return on_time


def slot_jobs(schedule: ScheduleRecord, slots: list[float], now: float) -> list[NewJob]:
    opts = JobOptions.from_json(schedule.opts)
    return [
        NewJob(
            name=schedule.name,
            data_json=schedule.data_json,
            opts={**schedule.opts, "job_id": slot_job_id(schedule.key, slot)},
            timestamp=now,
            job_id=slot_job_id(schedule.key, slot),
            run_at=now,
            priority=opts.priority,
            lifo=opts.lifo,
            dedup=opts.deduplication,
            group=opts.group,
        )
        for slot in slots
    ]


class Scheduler:
    """Turns the due slots of one queue's schedules into jobs. Safe to run in many processes."""

    def __init__(self, queue: str, backend: Backend, refresh: float = 5.0) -> None:
        self.queue = queue
        self.backend = backend
        self.refresh = refresh

    async def tick(self) -> float:
        """Fire every due schedule once; return the seconds until the next one is due."""
        now = time.time()
        wait = self.refresh
        for schedule in await self.backend.get_schedules(self.queue):
            if schedule.next_run <= now:
                cadence = Cadence(schedule.every, schedule.cron, schedule.tz)
                next_run = cadence.next_after(now)
                jobs = slot_jobs(schedule, due_slots(schedule, now), now)
                fired = await self.backend.advance_schedule(
                    self.queue, schedule.key, schedule.next_run, next_run, jobs
                )
                if fired and jobs:
                    log.debug("schedule %s/%s: %d job(s)", self.queue, schedule.key, len(jobs))
                schedule.next_run = next_run
            wait = min(wait, schedule.next_run - now)
        return max(wait, 0.0)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; backend errors are logged and retried after a pause."""
        while not stop.is_set():
            try:
                wait = await self.tick()
                OUTAGES.ok("scheduler")
            except Exception as exc:
                # an unreachable backend is logged once per outage; anything else is a bug
                if not OUTAGES.failed("scheduler", exc, f"queue {self.queue}"):
                    log.exception("scheduler for queue %s failed; retrying", self.queue)
                wait = min(self.refresh, 1.0)
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass
