"""The SQL of :class:`~polyjobs.backends.postgres.backend.PostgresBackend`, one function per
Backend call, each on a pooled connection whose search path is the deployment's schema.

Each function is one statement, one call of a schema function, or one short transaction;
notifications (``pg_notify``) are sent inside the transaction that makes a job ready, so a
woken fetch always sees the change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from polyjobs.backend import (
    AddResult,
    ControlMessage,
    Dependencies,
    Finish,
    FlowNode,
    JobRecord,
    JobRef,
    JobState,
    MinuteMetrics,
    NewJob,
    ScheduleRecord,
    Stalled,
    WorkerInfo,
    minute_of,
)
from polyjobs.backends.postgres import records
from polyjobs.options import KEEP_FAILED, Keep, RateLimit

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
STALLED_REASON = "job stalled more than allowable limit"

#: How each state is listed: waiting in fetch order, delayed by due time, active by start time,
#: finished newest first.
ORDER = {
    "waiting": "score, seq",
    "delayed": "score, seq",
    "active": "score, seq",
    "waiting-children": "score, seq",
    "completed": "score DESC, seq DESC",
    "failed": "score DESC, seq DESC",
}


# -- hot paths: one call of a schema function each ---------------------------------------------
ADD_ONE = "SELECT * FROM pj_add_one($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
ADD_BATCH = "SELECT * FROM pj_add_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"


async def add(
    conn: Conn, queue: str, now: float, channel: str, jobs: Sequence[NewJob]
) -> list[tuple[str, bool, bool]]:
    """Add jobs in one call: (id, whether it was automatic, whether it was added) per job, in
    order. One job goes through ``pj_add_one`` (plain arguments, a taken automatic id replaced
    in the call), more through ``pj_add_batch``."""
    if len(jobs) == 1:
        j = jobs[0]
        row = await conn.fetchrow(
            ADD_ONE,
            queue,
            now,
            channel,
            j.job_id,
            j.name,
            j.data_json,
            records.dumps(j.opts),
            j.timestamp,
            j.run_at,
            j.priority,
            j.lifo,
        )
        assert row is not None
        return [(row[0], j.job_id is None, row[1])]
    row = await conn.fetchrow(ADD_BATCH, queue, now, channel, *records.add_args(jobs))
    assert row is not None
    ids, autos, addeds = row
    if autos is None:  # every id automatic, every job added
        return [(job_id, True, True) for job_id in ids]
    return list(zip(ids, autos, addeds, strict=True))


async def add_jobs(
    conn: Conn, queue: str, now: float, channel: str, jobs: Sequence[NewJob]
) -> list[AddResult]:
    """Add jobs (an automatic id that was taken is tried again with the next one); jobs with a
    deduplication window go one by one through ``pj_add_dedup``, in order and in one
    transaction with the others, so that a later add of the batch meets an earlier one's
    window."""
    if all(j.dedup is None for j in jobs):
        return await _add_plain(conn, queue, now, channel, jobs)
    results: list[AddResult] = []
    async with conn.transaction():
        run: list[NewJob] = []
        for job in jobs:
            if job.dedup is None:
                run.append(job)
                continue
            if run:
                results += await _add_plain(conn, queue, now, channel, run)
                run = []
            results.append(await _add_dedup(conn, queue, now, job))
        if run:
            results += await _add_plain(conn, queue, now, channel, run)
    return results


async def _add_plain(
    conn: Conn, queue: str, now: float, channel: str, jobs: Sequence[NewJob]
) -> list[AddResult]:
    results: list[AddResult | None] = [None] * len(jobs)
    todo = list(range(len(jobs)))
    while todo:
        rows = await add(conn, queue, now, channel, [jobs[i] for i in todo])
        retry = []
        for index, (job_id, auto, added) in zip(todo, rows, strict=True):
            if auto and not added:
                retry.append(index)  # the automatic id was taken: another one
            else:
                results[index] = AddResult(job_id, added)
        todo = retry
    return [r for r in results if r is not None]


async def _add_dedup(conn: Conn, queue: str, now: float, job: NewJob) -> AddResult:
    d = job.dedup
    assert d is not None
    row = await conn.fetchrow(
        "SELECT * FROM pj_add_dedup($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
        "$14, $15)",
        queue,
        now,
        job.job_id,
        job.name,
        job.data_json,
        json.dumps(job.opts, separators=(",", ":")),
        job.timestamp,
        job.run_at,
        job.priority,
        job.lifo,
        d.id,
        d.ttl,
        d.extend,
        d.replace,
        d.keep_last_if_active,
    )
    assert row is not None
    return AddResult(row["out_id"], row["out_added"], row["out_dedup"])


async def take(
    conn: Conn, queue: str, token: str, limit: int, now: float, until: float, want_next: bool
) -> list[Any]:
    return await conn.fetch(
        "SELECT * FROM pj_fetch($1, $2, $3, $4, $5, $6)", queue, token, limit, now, until, want_next
    )


async def finish(
    conn: Conn,
    queue: str,
    token: str,
    now: float,
    until: float,
    fetch: int,
    channel: str,
    finishes: Sequence[Finish],
) -> list[Any]:
    return await conn.fetch(
        "SELECT * FROM pj_finish($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
        "$15, $16)",
        queue,
        token,
        now,
        until,
        fetch,
        channel,
        *records.finish_args(finishes),
    )


async def add_log(conn: Conn, queue: str, job_id: str, line: str, keep: int) -> int:
    return int(await conn.fetchval("SELECT pj_log($1, $2, $3, $4)", queue, job_id, line, keep))


async def send_control(conn: Conn, now: float, command: str, payload: str, keep: int) -> float:
    return float(
        await conn.fetchval("SELECT pj_control($1, $2, $3, $4)", now, command, payload, keep)
    )


# -- workers -----------------------------------------------------------------------------------
async def extend(conn: Conn, queue: str, token: str, job_ids: list[str], until: float) -> set[str]:
    rows = await conn.fetch(
        "UPDATE jobs SET lease_until = $4 WHERE queue = $1 AND id = ANY($2::text[]) "
        "AND state = 'active' AND worker = $3 RETURNING id",
        queue,
        job_ids,
        token,
        until,
    )
    return {r["id"] for r in rows}


async def release(
    conn: Conn, queue: str, token: str, job_ids: list[str] | None, channel: str
) -> list[str]:
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id FROM jobs WHERE queue = $1 AND state = 'active' AND worker = $2 "
            "ORDER BY score, seq FOR UPDATE",
            queue,
            token,
        )
        owned = [r["id"] for r in rows]
        if job_ids is not None:
            mine = set(owned)
            owned = [i for i in job_ids if i in mine]
        if not owned:
            return []
        # each released job goes before the previous one (the front of its priority level)
        await conn.execute(
            "UPDATE jobs SET state = 'waiting', score = priority, seq = s.seq, worker = NULL, "
            "lease_until = NULL FROM (SELECT r.id, -nextval('pj_seq') AS seq FROM (SELECT id, n "
            "FROM unnest($2::text[]) WITH ORDINALITY AS u(id, n) ORDER BY n) r) s "
            "WHERE jobs.queue = $1 AND jobs.id = s.id",
            queue,
            owned,
        )
        await conn.execute("SELECT pg_notify($1, $2)", channel, queue)
    return owned


async def recover_stalled(
    conn: Conn, queue: str, max_stalls: int, now: float, channel: str
) -> list[Stalled]:
    expired = await conn.fetchval(
        "SELECT 1 FROM jobs WHERE queue = $1 AND state = 'active' AND lease_until <= $2 LIMIT 1",
        queue,
        now,
    )
    if expired is None:
        return []
    out: list[Stalled] = []
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id, stalls, opts, linked FROM jobs WHERE queue = $1 AND state = 'active' "
            "AND lease_until <= $2 ORDER BY score, seq FOR UPDATE SKIP LOCKED",
            queue,
            now,
        )
        keeps: list[Keep] = []
        for row in rows:
            stalls = row["stalls"] + 1
            if stalls > max_stalls:
                await conn.execute(
                    "UPDATE jobs SET state = 'failed', score = $3, seq = nextval('pj_seq'), "
                    "stalls = $4, failed_reason = $5, finished_on = $3, worker = NULL, "
                    "lease_until = NULL WHERE queue = $1 AND id = $2",
                    queue,
                    row["id"],
                    now,
                    stalls,
                    STALLED_REASON,
                )
                if row["linked"]:  # its parents and its window, before any retention
                    await conn.execute(
                        "SELECT pj_job_failed($1, $2, $3, $4)",
                        queue,
                        row["id"],
                        STALLED_REASON,
                        now,
                    )
                opts = json.loads(row["opts"])
                keeps.append(Keep.from_json(opts.get("remove_on_fail"), KEEP_FAILED))
                out.append(Stalled(row["id"], True))
            else:
                await conn.execute(
                    "UPDATE jobs SET state = 'waiting', score = priority, "
                    "seq = nextval('pj_seq'), stalls = $3, worker = NULL, lease_until = NULL "
                    "WHERE queue = $1 AND id = $2",
                    queue,
                    row["id"],
                    stalls,
                )
                out.append(Stalled(row["id"], False))
        for keep in dict.fromkeys(keeps):
            if keep.removes_at_once:
                await conn.execute(
                    "DELETE FROM jobs WHERE queue = $1 AND state = 'failed' AND id = ANY($2)",
                    queue,
                    [s.job_id for s in out if s.failed],
                )
            else:
                await conn.execute(
                    "SELECT pj_trim($1, 'failed', $2, $3, $4)", queue, keep.count, keep.age, now
                )
        if any(not s.failed for s in out):
            await conn.execute("SELECT pg_notify($1, $2)", channel, queue)
    return out


async def update_progress(conn: Conn, queue: str, job_id: str, progress: str) -> bool:
    status = await conn.execute(
        "UPDATE jobs SET progress = $3 WHERE queue = $1 AND id = $2", queue, job_id, progress
    )
    return _count(status) > 0


# -- inspection --------------------------------------------------------------------------------
async def get_job(conn: Conn, queue: str, job_id: str) -> JobRecord | None:
    row = await conn.fetchrow("SELECT * FROM jobs WHERE queue = $1 AND id = $2", queue, job_id)
    return None if row is None else records.job(row)


async def get_logs(conn: Conn, queue: str, job_id: str, start: int, end: int) -> list[str]:
    total = await conn.fetchval(
        "SELECT count(*) FROM job_logs WHERE queue = $1 AND job_id = $2", queue, job_id
    )
    offset, limit = records.slice_range(int(total), start, end)
    if limit == 0:
        return []
    rows = await conn.fetch(
        "SELECT line FROM job_logs WHERE queue = $1 AND job_id = $2 ORDER BY n OFFSET $3 LIMIT $4",
        queue,
        job_id,
        offset,
        limit,
    )
    return [r["line"] for r in rows]


async def list_jobs(
    conn: Conn, queue: str, state: JobState, start: int, end: int
) -> list[JobRecord]:
    if start < 0 or end < 0:
        total = int(
            await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE queue = $1 AND state = $2", queue, state
            )
        )
    else:
        total = 0
    offset, limit = records.slice_range(total, start, end)
    if limit == 0:
        return []
    rows = await conn.fetch(
        f"SELECT * FROM jobs WHERE queue = $1 AND state = $2 ORDER BY {ORDER[state]} "
        "OFFSET $3 LIMIT $4",
        queue,
        state,
        offset,
        limit,
    )
    return [records.job(r) for r in rows]


async def counts(conn: Conn, queue: str) -> dict[str, int]:
    found = dict.fromkeys(("waiting", "active", "delayed", "waiting-children"), 0)
    found.update(completed=0, failed=0)
    rows = await conn.fetch(
        "SELECT state, count(*) AS n FROM jobs WHERE queue = $1 GROUP BY state", queue
    )
    for row in rows:
        found[row["state"]] = int(row["n"])
    return found


async def queues(conn: Conn) -> list[str]:
    rows = await conn.fetch(
        "SELECT queue FROM queues q WHERE paused "
        "OR EXISTS (SELECT 1 FROM jobs j WHERE j.queue = q.queue) "
        "OR EXISTS (SELECT 1 FROM schedules s WHERE s.queue = q.queue) "
        "OR EXISTS (SELECT 1 FROM workers w WHERE w.queue = q.queue) ORDER BY queue"
    )
    return [r["queue"] for r in rows]


# -- administration ----------------------------------------------------------------------------
async def _register(conn: Conn, queue: str) -> None:
    await conn.execute("INSERT INTO queues (queue) VALUES ($1) ON CONFLICT DO NOTHING", queue)


async def set_paused(conn: Conn, queue: str, paused: bool, channel: str) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO queues (queue, paused) VALUES ($1, $2) "
            "ON CONFLICT (queue) DO UPDATE SET paused = EXCLUDED.paused",
            queue,
            paused,
        )
        if not paused:
            await conn.execute("SELECT pg_notify($1, $2)", channel, queue)


async def is_paused(conn: Conn, queue: str) -> bool:
    return bool(await conn.fetchval("SELECT paused FROM queues WHERE queue = $1", queue))


async def drain(conn: Conn, queue: str, delayed: bool) -> int:
    states = ["waiting", "delayed"] if delayed else ["waiting"]
    status = await conn.execute(
        "DELETE FROM jobs WHERE queue = $1 AND state = ANY($2::text[])", queue, states
    )
    return _count(status)


async def clean(conn: Conn, queue: str, state: JobState, cutoff: float, limit: int) -> list[str]:
    # the same order as the other backends: from the end of each listing
    oldest_first = "score, seq" if state in ("completed", "failed") else "score DESC, seq DESC"
    rows = await conn.fetch(
        "DELETE FROM jobs WHERE (queue, id) IN (SELECT queue, id FROM jobs WHERE queue = $1 "
        'AND state = $2 AND coalesce(finished_on, "timestamp") <= $3 '
        f"ORDER BY {oldest_first} LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING id, score, seq",
        queue,
        state,
        cutoff,
        limit if limit > 0 else None,
    )
    descending = state not in ("completed", "failed")
    rows = sorted(rows, key=lambda r: (r["score"], r["seq"]), reverse=descending)
    return [r["id"] for r in rows]


async def remove(conn: Conn, queue: str, job_id: str) -> bool:
    status = await conn.execute(
        "DELETE FROM jobs WHERE queue = $1 AND id = $2 AND state <> 'active'", queue, job_id
    )
    return _count(status) > 0


async def retry(conn: Conn, queue: str, job_id: str, channel: str) -> bool:
    async with conn.transaction():
        status = await conn.execute(
            "UPDATE jobs SET state = 'waiting', score = priority, seq = nextval('pj_seq'), "
            "attempts_made = 0, stalls = 0, failed_reason = NULL, stacktrace = NULL, "
            "finished_on = NULL, processed_on = NULL, cancel_reason = NULL WHERE queue = $1 "
            "AND id = $2 AND state = 'failed'",
            queue,
            job_id,
        )
        if _count(status) == 0:
            return False
        await conn.execute("SELECT pg_notify($1, $2)", channel, queue)
    return True


async def cancel(
    conn: Conn, queue: str, job_id: str, reason: str, now: float, channel: str
) -> str | None:
    """A waiting or delayed job fails (its parents and window settled); an active one is
    marked with its cancel request."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT state, linked FROM jobs WHERE queue = $1 AND id = $2 FOR UPDATE",
            queue,
            job_id,
        )
        if row is None:
            return None
        if row["state"] == "active":
            await conn.execute(
                "UPDATE jobs SET cancel_reason = $3 WHERE queue = $1 AND id = $2",
                queue,
                job_id,
                reason,
            )
            return "requested"
        if row["state"] not in ("waiting", "delayed"):
            return None
        await conn.execute(
            "UPDATE jobs SET state = 'failed', score = $3, seq = nextval('pj_seq'), "
            "failed_reason = $4, stacktrace = NULL, finished_on = $3, worker = NULL, "
            "lease_until = NULL WHERE queue = $1 AND id = $2",
            queue,
            job_id,
            now,
            reason,
        )
        if row["linked"]:  # its parents and its window
            await conn.execute("SELECT pj_job_failed($1, $2, $3, $4)", queue, job_id, reason, now)
            await conn.execute("SELECT pg_notify($1, $2)", channel, queue)
    return "failed"


async def set_global_concurrency(conn: Conn, queue: str, limit: int | None, channel: str) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO queues (queue, concurrency) VALUES ($1, $2) "
            "ON CONFLICT (queue) DO UPDATE SET concurrency = EXCLUDED.concurrency",
            queue,
            limit,
        )
        await conn.execute("SELECT pg_notify($1, $2)", channel, queue)


async def get_global_concurrency(conn: Conn, queue: str) -> int | None:
    value = await conn.fetchval("SELECT concurrency FROM queues WHERE queue = $1", queue)
    return None if value is None else int(value)


async def cancel_requests(conn: Conn, queue: str, job_ids: list[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT id, cancel_reason FROM jobs WHERE queue = $1 AND id = ANY($2::text[]) "
        "AND cancel_reason IS NOT NULL",
        queue,
        job_ids,
    )
    return {r["id"]: r["cancel_reason"] for r in rows}


async def promote(conn: Conn, queue: str, job_id: str, now: float, channel: str) -> bool:
    async with conn.transaction():
        status = await conn.execute(
            "UPDATE jobs SET state = 'waiting', score = priority, seq = nextval('pj_seq'), "
            "run_at = $3 WHERE queue = $1 AND id = $2 AND state = 'delayed'",
            queue,
            job_id,
            now,
        )
        if _count(status) == 0:
            return False
        await conn.execute("SELECT pg_notify($1, $2)", channel, queue)
    return True


async def get_metrics(conn: Conn, queue: str, since: float) -> list[MinuteMetrics]:
    rows = await conn.fetch(
        "SELECT minute, completed, failed, time_sum FROM metrics WHERE queue = $1 "
        "AND minute >= $2 ORDER BY minute",
        queue,
        minute_of(since),
    )
    return [MinuteMetrics(float(r[0]), int(r[1]), int(r[2]), float(r[3])) for r in rows]


async def obliterate(conn: Conn, queue: str) -> None:
    async with conn.transaction():
        # deleting the jobs settles their flows and windows (the jobs_unlinked trigger)
        tables = ("job_logs", "jobs", "schedules", "workers", "rate_starts", "queues", "dedup")
        for table in (*tables, "job_deps", "metrics", "job_groups", "group_starts"):
            await conn.execute(f"DELETE FROM {table} WHERE queue = $1", queue)


# -- rate limits -------------------------------------------------------------------------------
async def set_rate_limit(conn: Conn, queue: str, limit: RateLimit | None, channel: str) -> None:
    rate_max, duration = (None, None) if limit is None else (limit.max, limit.duration)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO queues (queue, rate_max, rate_duration) VALUES ($1, $2, $3) "
            "ON CONFLICT (queue) DO UPDATE SET rate_max = EXCLUDED.rate_max, "
            "rate_duration = EXCLUDED.rate_duration",
            queue,
            rate_max,
            duration,
        )
        if limit is None:
            await conn.execute("DELETE FROM rate_starts WHERE queue = $1", queue)
        await conn.execute("SELECT pg_notify($1, $2)", channel, queue)


async def get_rate_limit(conn: Conn, queue: str) -> RateLimit | None:
    row = await conn.fetchrow(
        "SELECT rate_max, rate_duration FROM queues WHERE queue = $1 AND rate_max IS NOT NULL",
        queue,
    )
    return None if row is None else RateLimit(int(row[0]), float(row[1]))


async def hold(conn: Conn, queue: str, until: float) -> None:
    await conn.execute(
        "INSERT INTO queues (queue, hold_until) VALUES ($1, $2) ON CONFLICT (queue) "
        "DO UPDATE SET hold_until = greatest(queues.hold_until, EXCLUDED.hold_until)",
        queue,
        until,
    )


# -- groups ------------------------------------------------------------------------------------
async def set_group_concurrency(conn: Conn, queue: str, limit: int | None, channel: str) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO queues (queue, group_concurrency) VALUES ($1, $2) ON CONFLICT (queue) "
            "DO UPDATE SET group_concurrency = EXCLUDED.group_concurrency",
            queue,
            limit,
        )
        await conn.execute("SELECT pg_notify($1, $2)", channel, queue)


async def get_group_concurrency(conn: Conn, queue: str) -> int | None:
    found = await conn.fetchval("SELECT group_concurrency FROM queues WHERE queue = $1", queue)
    return None if found is None else int(found)


async def set_group_rate_limit(
    conn: Conn, queue: str, limit: RateLimit | None, channel: str
) -> None:
    rate_max, duration = (None, None) if limit is None else (limit.max, limit.duration)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO queues (queue, group_rate_max, group_rate_duration) VALUES ($1, $2, $3) "
            "ON CONFLICT (queue) DO UPDATE SET group_rate_max = EXCLUDED.group_rate_max, "
            "group_rate_duration = EXCLUDED.group_rate_duration",
            queue,
            rate_max,
            duration,
        )
        if limit is None:
            await conn.execute("DELETE FROM group_starts WHERE queue = $1", queue)
        await conn.execute("SELECT pg_notify($1, $2)", channel, queue)


async def get_group_rate_limit(conn: Conn, queue: str) -> RateLimit | None:
    row = await conn.fetchrow(
        "SELECT group_rate_max, group_rate_duration FROM queues WHERE queue = $1 "
        "AND group_rate_max IS NOT NULL",
        queue,
    )
    return None if row is None else RateLimit(int(row[0]), float(row[1]))


async def hold_group(conn: Conn, queue: str, group: str, until: float) -> None:
    """A hold is only ever moved later."""
    await conn.execute(
        "INSERT INTO job_groups (queue, grp, held_until) VALUES ($1, $2, $3) "
        "ON CONFLICT (queue, grp) "
        "DO UPDATE SET held_until = greatest(job_groups.held_until, EXCLUDED.held_until)",
        queue,
        group,
        until,
    )


# -- control -----------------------------------------------------------------------------------
async def control_since(conn: Conn, since: float) -> list[ControlMessage]:
    rows = await conn.fetch(
        "SELECT at, command, payload FROM control WHERE at > $1 ORDER BY at", since
    )
    return [ControlMessage(float(r[0]), str(r[1]), str(r[2])) for r in rows]


# -- schedules ---------------------------------------------------------------------------------
async def save_schedule(conn: Conn, queue: str, s: ScheduleRecord) -> ScheduleRecord:
    """Create or replace, atomically; the stored next run stays when the cadence is the same."""
    async with conn.transaction():
        await _register(conn, queue)
        row = await conn.fetchrow(
            f"INSERT INTO schedules AS s (queue, {records.SCHEDULE_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (queue, key) DO UPDATE SET name = EXCLUDED.name, data = EXCLUDED.data, "
            "opts = EXCLUDED.opts, missed = EXCLUDED.missed, grace = EXCLUDED.grace, "
            "created = EXCLUDED.created, every = EXCLUDED.every, cron = EXCLUDED.cron, "
            "tz = EXCLUDED.tz, next_run = CASE WHEN (s.every, s.cron, s.tz) IS NOT DISTINCT FROM "
            "(EXCLUDED.every, EXCLUDED.cron, EXCLUDED.tz) THEN s.next_run "
            f"ELSE EXCLUDED.next_run END RETURNING {records.SCHEDULE_COLUMNS}",
            queue,
            s.key,
            s.name,
            s.data_json,
            json.dumps(s.opts),
            s.next_run,
            s.every,
            s.cron,
            s.tz,
            s.missed,
            s.grace,
            s.created,
        )
    assert row is not None
    return records.schedule(row)


async def get_schedules(conn: Conn, queue: str) -> list[ScheduleRecord]:
    rows = await conn.fetch(
        f"SELECT {records.SCHEDULE_COLUMNS} FROM schedules WHERE queue = $1 ORDER BY created, key",
        queue,
    )
    return [records.schedule(r) for r in rows]


async def remove_schedule(conn: Conn, queue: str, key: str) -> bool:
    status = await conn.execute("DELETE FROM schedules WHERE queue = $1 AND key = $2", queue, key)
    return _count(status) > 0


async def advance_schedule(
    conn: Conn,
    queue: str,
    key: str,
    expected: float,
    next_run: float,
    jobs: Sequence[NewJob],
    now: float,
    channel: str,
) -> bool:
    async with conn.transaction():
        status = await conn.execute(
            "UPDATE schedules SET next_run = $3 WHERE queue = $1 AND key = $2 AND next_run = $4",
            queue,
            key,
            next_run,
            expected,
        )
        if _count(status) == 0:
            return False
        if jobs:
            await add_jobs(conn, queue, now, channel, jobs)
    return True


# -- worker registry ---------------------------------------------------------------------------
async def heartbeat(conn: Conn, info: WorkerInfo, now: float, ttl: float) -> None:
    async with conn.transaction():
        await _register(conn, info.queue)
        await conn.execute(
            "DELETE FROM workers WHERE queue = $1 AND expires <= $2", info.queue, now
        )
        await conn.execute(
            f"INSERT INTO workers ({records.WORKER_COLUMNS}, expires) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
            "ON CONFLICT (queue, id) DO UPDATE SET "
            "host = EXCLUDED.host, pid = EXCLUDED.pid, concurrency = EXCLUDED.concurrency, "
            "started = EXCLUDED.started, last_seen = EXCLUDED.last_seen, "
            "active = EXCLUDED.active, fetched = EXCLUDED.fetched, expires = EXCLUDED.expires",
            info.id,
            info.queue,
            info.host,
            info.pid,
            info.concurrency,
            info.started,
            now,
            info.active,
            info.fetched,
            now + ttl,
        )


async def unregister(conn: Conn, queue: str, worker_id: str) -> None:
    await conn.execute("DELETE FROM workers WHERE queue = $1 AND id = $2", queue, worker_id)


async def list_workers(conn: Conn, queue: str, now: float) -> list[WorkerInfo]:
    rows = await conn.fetch(
        f"SELECT {records.WORKER_COLUMNS} FROM workers WHERE queue = $1 AND expires > $2 "
        "ORDER BY started, id",
        queue,
        now,
    )
    return [records.worker(r) for r in rows]


# -- helpers -----------------------------------------------------------------------------------
def _count(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3`` or ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])


# -- flows and deduplication windows ------------------------------------------------------------
#: SQLSTATE of the flow errors ``pj_add_flow`` raises (a missing reference, children for a job
#: that exists): the caller's mistake, reported as ``InvalidArgumentError``.
FLOW_ERROR = "PJ400"


async def add_flow(conn: Conn, nodes: Sequence[FlowNode], now: float) -> list[AddResult]:
    rows = await conn.fetch(
        "SELECT * FROM pj_add_flow($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
        "$15)",
        now,
        *records.flow_args(nodes),
    )
    return [AddResult(r["out_id"], r["out_added"]) for r in rows]


async def get_dependencies(conn: Conn, queue: str, job_id: str) -> Dependencies:
    deps = Dependencies()
    rows = await conn.fetch(
        "SELECT d.child_queue, d.child_id, d.status, d.value, j.state FROM job_deps d "
        "LEFT JOIN jobs j ON j.queue = d.child_queue AND j.id = d.child_id "
        "WHERE d.queue = $1 AND d.id = $2",
        queue,
        job_id,
    )
    for child_queue, child_id, status, value, state in rows:
        ref = JobRef(child_queue, child_id)
        if status == "processed":
            deps.processed[ref] = json.loads(value) if value else None
        elif status == "ignored":
            deps.ignored[ref] = value or ""
        else:
            deps.pending[ref] = state
    return deps


async def get_parents(conn: Conn, queue: str, job_id: str) -> list[JobRef]:
    rows = await conn.fetch(
        "SELECT d.queue, d.id FROM job_deps d JOIN jobs j ON j.queue = d.queue AND j.id = d.id "
        "WHERE d.child_queue = $1 AND d.child_id = $2",
        queue,
        job_id,
    )
    return [JobRef(q, i) for q, i in rows]


async def get_deduplication(conn: Conn, queue: str, dedup_id: str, now: float) -> str | None:
    holder = await conn.fetchval(
        "SELECT d.job_id FROM dedup d JOIN jobs j ON j.queue = d.queue AND j.id = d.job_id "
        "WHERE d.queue = $1 AND d.key = $2 AND (d.expires IS NULL OR d.expires > $3)",
        queue,
        dedup_id,
        now,
    )
    return None if holder is None else str(holder)


async def remove_deduplication(conn: Conn, queue: str, dedup_id: str, now: float) -> bool:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(pj_dedup_lock($1, $2))", queue, dedup_id)
        held = await get_deduplication(conn, queue, dedup_id, now)
        await conn.execute("DELETE FROM dedup WHERE queue = $1 AND key = $2", queue, dedup_id)
    return held is not None
