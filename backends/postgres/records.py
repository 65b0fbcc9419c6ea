"""Rows of the PostgreSQL schema as the contract's records, and the arguments of its functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from asyncpg import Record

from polyjobs.backend import Finish, FlowNode, JobRecord, NewJob, ScheduleRecord, WorkerInfo

try:
    import orjson

    def loads(text: str) -> Any:
        """JSON of engine-made values (options); users' payloads go through ``json``, which
        keeps integers of any size (orjson turns those beyond 64 bits into floats)."""
        return orjson.loads(text)

    def dumps(value: Any) -> str:
        """Compact JSON of engine-made values (options): plain JSON types only."""
        return orjson.dumps(value).decode()

except ImportError:  # pragma: no cover - orjson is an optional speed-up

    def loads(text: str) -> Any:
        return json.loads(text)

    def dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))


SCHEDULE_COLUMNS = "key, name, data, opts, next_run, every, cron, tz, missed, grace, created"
WORKER_COLUMNS = "id, queue, host, pid, concurrency, started, last_seen, active, fetched"


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def job(row: Record) -> JobRecord:
    return JobRecord(
        id=row["id"],
        name=row["name"],
        data=json.loads(row["data"]),
        opts=loads(row["opts"]),
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
        fetched=row["fetched"],
    )


def add_args(jobs: Sequence[NewJob]) -> list[Any]:
    """The nine arguments of ``pj_add_batch`` after (queue, now, channel): the ids (``None``
    when every one is automatic), names, payloads, the distinct option texts and each job's
    position among them (1-based), times, priorities and lifo flags. The jobs of a bulk add
    mostly share one options object (the queue's defaults): it is encoded and sent once; so is
    a name, position, time, priority or flag every job has (a list of one, see
    ``pj_batch_rows``)."""
    texts: dict[int, int] = {}
    distinct: list[str] = []
    positions = []
    for j in jobs:
        at = texts.get(id(j.opts))
        if at is None:
            distinct.append(dumps(j.opts))
            at = texts[id(j.opts)] = len(distinct)
        positions.append(at)
    ids = [j.job_id for j in jobs]
    return [
        None if all(i is None for i in ids) else ids,
        _shared([j.name for j in jobs]),
        [j.data_json for j in jobs],
        distinct,
        _shared(positions),
        _shared([j.timestamp for j in jobs]),
        _shared([j.run_at for j in jobs]),
        _shared([j.priority for j in jobs]),
        _shared([j.lifo for j in jobs]),
    ]


def _shared(values: list[Any]) -> list[Any]:
    """``values``, or its first element alone when every element equals it."""
    first = values[0]
    return [first] if values.count(first) == len(values) else values


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


def flow_args(nodes: Sequence[FlowNode]) -> list[list[Any]]:
    """The fourteen array arguments of ``pj_add_flow`` after ``now``: one element per node
    (a reference to an existing job has no name, data or options), and the children of node
    ``i`` as ``kids[kid_starts[i] .. kid_starts[i] + kid_counts[i] - 1]``, 1-based."""
    children = {c for node in nodes for c in node.children}
    kids: list[int] = []
    starts: list[int] = []
    for node in nodes:
        starts.append(len(kids) + 1)
        kids += [c + 1 for c in node.children]
    jobs = [node.job for node in nodes]
    return [
        [node.queue for node in nodes],
        [node.job.job_id if node.job is not None else node.job_id for node in nodes],
        [job is None for job in jobs],
        [job.name if job else "" for job in jobs],
        [job.data_json if job else "null" for job in jobs],
        [json.dumps(_opts(node), separators=(",", ":")) for node in nodes],
        [job.timestamp if job else 0.0 for job in jobs],
        [job.run_at if job else 0.0 for job in jobs],
        [job.priority if job else 0 for job in jobs],
        [job.lifo if job else False for job in jobs],
        [bool(node.children) or i in children for i, node in enumerate(nodes)],
        starts,
        [len(node.children) for node in nodes],
        kids,
    ]


def _opts(node: FlowNode) -> dict[str, Any]:
    """A node's options, holding its failure policy (which ``pj_child_failed`` reads)."""
    if node.job is None:
        return {}
    if node.policy == "wait" or node.job.opts.get("failure_policy") == node.policy:
        return node.job.opts
    return {**node.job.opts, "failure_policy": node.policy}


def slice_range(total: int, start: int, end: int) -> tuple[int, int]:
    """Redis-style inclusive ``start..end`` (negative counts from the end) as (offset, limit);
    limit 0 when the range is empty."""
    start = max(total + start, 0) if start < 0 else start
    end = total + end if end < 0 else end
    return start, max(end - start + 1, 0)
