"""Rows of the PostgreSQL schema as the contract's records, and the arguments of its functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from asyncpg import Record

from polyjobs.backend import Finish, JobRecord, NewJob, ScheduleRecord, WorkerInfo

SCHEDULE_COLUMNS = "key, name, data, opts, next_run, every, cron, tz, missed, grace, created"
WORKER_COLUMNS = "id, queue, host, pid, concurrency, started, last_seen, active"


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def job(row: Record) -> JobRecord:
    return JobRecord(
        id=row["id"],
        name=row["name"],
        data=json.loads(row["data"]),
        opts=json.loads(row["opts"]),
        state=row["state"],
        timestamp=row["timestamp"],
        run_at=row["run_at"],
        priority=row["priority"],
        attempts_made=row["attempts_made"],
        attempts_started=row["attempts_started"],
        stalls=row["stalls"],
        progress=_json(row["progress"]),
        returnvalue=_json(row["returnvalue"]),
        failed_reason=row["failed_reason"],
        stacktrace=row["stacktrace"],
        processed_on=row["processed_on"],
        finished_on=row["finished_on"],
        worker=row["worker"],
        lease_until=row["lease_until"],
    )


def schedule(row: Record) -> ScheduleRecord:
    return ScheduleRecord(
        key=row["key"],
        name=row["name"],
        data_json=row["data"],
        opts=json.loads(row["opts"]),
        next_run=row["next_run"],
        every=row["every"],
        cron=row["cron"],
        tz=row["tz"],
        missed=row["missed"],
        grace=row["grace"],
        created=row["created"],
    )


def worker(row: Record) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        queue=row["queue"],
        host=row["host"],
        pid=row["pid"],
        concurrency=row["concurrency"],
        started=row["started"],
        last_seen=row["last_seen"],
        active=row["active"],
    )


def add_args(jobs: Sequence[NewJob]) -> list[list[Any]]:
    """The eight array arguments of ``pj_add`` after (queue, now, channel)."""
    return [
        [j.job_id for j in jobs],
        [j.name for j in jobs],
        [j.data_json for j in jobs],
        [json.dumps(j.opts, separators=(",", ":")) for j in jobs],
        [j.timestamp for j in jobs],
        [j.run_at for j in jobs],
        [j.priority for j in jobs],
        [j.lifo for j in jobs],
    ]


def finish_args(finishes: Sequence[Finish]) -> list[list[Any]]:
    """The ten array arguments of ``pj_finish`` after its scalars."""
    return [
        [f.job_id for f in finishes],
        [f.status for f in finishes],
        [f.attempts_made for f in finishes],
        [f.finished_on for f in finishes],
        [f.returnvalue_json for f in finishes],
        [f.failed_reason for f in finishes],
        [f.stacktrace for f in finishes],
        [f.retry_at for f in finishes],
        [f.keep.count for f in finishes],
        [f.keep.age for f in finishes],
    ]


def slice_range(total: int, start: int, end: int) -> tuple[int, int]:
    """Redis-style inclusive ``start..end`` (negative counts from the end) as (offset, limit);
    limit 0 when the range is empty."""
    start = max(total + start, 0) if start < 0 else start
    end = total + end if end < 0 else end
    return start, max(end - start + 1, 0)
