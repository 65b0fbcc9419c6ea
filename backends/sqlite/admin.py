"""Inspection, administration, schedules and the worker registry on one SQLite connection.

Functions that change data are the body of one ``BEGIN IMMEDIATE`` transaction (see
:meth:`Database.write`); the others read outside a transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from polyjobs.backend import (
    JobRecord,
    JobState,
    MinuteMetrics,
    NewJob,
    ScheduleRecord,
    WorkerInfo,
    inclusive_range,
    minute_of,
)
from polyjobs.backends.sqlite import flows
from polyjobs.backends.sqlite.jobs import JOB_COLUMNS, add, meta, record, take_seqs
from polyjobs.options import RateLimit

#: How each state is listed: waiting in fetch order, delayed by due time, active by start time,
#: finished newest first.
ORDER = {
    "waiting": "score, seq",
    "waiting-children": "score, seq",
    "delayed": "score, seq",
    "active": "score, seq",
    "completed": "score DESC, seq DESC",
    "failed": "score DESC, seq DESC",
}


# -- progress and logs -----------------------------------------------------------------------
def update_progress(conn: sqlite3.Connection, queue: str, job_id: str, progress: str) -> bool:
    cur = conn.execute(
        "UPDATE jobs SET progress = ? WHERE queue = ? AND id = ?", (progress, queue, job_id)
    )
    return cur.rowcount > 0


def add_log(conn: sqlite3.Connection, queue: str, job_id: str, line: str, keep: int) -> int:
    if conn.execute("SELECT 1 FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)).fetchone():
        last = conn.execute(
            "SELECT coalesce(max(n), 0) FROM job_logs WHERE queue = ? AND job_id = ?",
            (queue, job_id),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO job_logs (queue, job_id, n, line) VALUES (?, ?, ?, ?)",
            (queue, job_id, last + 1, line),
        )
        if keep > 0:
            conn.execute(
                "DELETE FROM job_logs WHERE queue = ? AND job_id = ? AND n <= ?",
                (queue, job_id, last + 1 - keep),
            )
        return int(
            conn.execute(
                "SELECT count(*) FROM job_logs WHERE queue = ? AND job_id = ?", (queue, job_id)
            ).fetchone()[0]
        )
    return 0


def get_logs(conn: sqlite3.Connection, queue: str, job_id: str, start: int, end: int) -> list[str]:
    lines = [
        row[0]
        for row in conn.execute(
            "SELECT line FROM job_logs WHERE queue = ? AND job_id = ? ORDER BY n", (queue, job_id)
        )
    ]
    return inclusive_range(lines, start, end)


# -- inspection ------------------------------------------------------------------------------
def get_job(conn: sqlite3.Connection, queue: str, job_id: str) -> JobRecord | None:
    row = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)
    ).fetchone()
    return None if row is None else record(row)


def list_jobs(
    conn: sqlite3.Connection, queue: str, state: JobState, start: int, end: int
) -> list[JobRecord]:
    sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND state = ? ORDER BY {ORDER[state]}"
    if start < 0 or end < 0:
        total = conn.execute(
            "SELECT count(*) FROM jobs WHERE queue = ? AND state = ?", (queue, state)
        ).fetchone()[0]
        start = max(total + start, 0) if start < 0 else start
        end = total + end if end < 0 else end
    if end < start:
        return []
    rows = conn.execute(f"{sql} LIMIT ? OFFSET ?", (queue, state, end - start + 1, start))
    return [record(row) for row in rows]


def counts(conn: sqlite3.Connection, queue: str) -> dict[str, int]:
    found = {
        "waiting": 0,
        "active": 0,
        "delayed": 0,
        "waiting-children": 0,
        "completed": 0,
        "failed": 0,
    }
    for state, n in conn.execute(
        "SELECT state, count(*) FROM jobs WHERE queue = ? GROUP BY state", (queue,)
    ):
        found[state] = n
    return found


def queues(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT queue FROM (SELECT DISTINCT queue FROM jobs) "
        "UNION SELECT queue FROM schedules UNION SELECT queue FROM workers "
        "UNION SELECT queue FROM queue_meta WHERE paused ORDER BY 1"
    )
    return [row[0] for row in rows]


# -- administration --------------------------------------------------------------------------
def set_paused(conn: sqlite3.Connection, queue: str, paused: bool) -> None:
    meta(conn, queue)
    conn.execute("UPDATE queue_meta SET paused = ? WHERE queue = ?", (int(paused), queue))


def drain(conn: sqlite3.Connection, queue: str, delayed: bool, woken: set[str]) -> int:
    states = "('waiting', 'delayed')" if delayed else "('waiting')"
    gone = conn.execute(
        f"DELETE FROM jobs WHERE queue = ? AND state IN {states} RETURNING id, state", (queue,)
    ).fetchall()
    flows.forget(conn, queue, [(r[0], r[1]) for r in gone], woken)
    return len(gone)


def clean(
    conn: sqlite3.Connection,
    queue: str,
    state: JobState,
    grace: float,
    limit: int,
    woken: set[str],
) -> list[str]:
    if state == "active":
        return []
    cutoff = time.time() - grace
    # the same order as the in-memory backend: from the end of each listing
    oldest_first = "score, seq" if state in ("completed", "failed") else "score DESC, seq DESC"
    rows = conn.execute(
        f"SELECT rowid, id FROM jobs WHERE queue = ? AND state = ? "
        f"AND coalesce(finished_on, timestamp) <= ? ORDER BY {oldest_first} LIMIT ?",
        (queue, state, cutoff, limit if limit > 0 else -1),
    ).fetchall()
    conn.executemany("DELETE FROM jobs WHERE rowid = ?", [(row[0],) for row in rows])
    flows.forget(conn, queue, [(row[1], state) for row in rows], woken)
    return [row[1] for row in rows]


def remove(conn: sqlite3.Connection, queue: str, job_id: str, woken: set[str]) -> bool:
    gone = conn.execute(
        "DELETE FROM jobs WHERE queue = ? AND id = ? AND state != 'active' RETURNING id, state",
        (queue, job_id),
    ).fetchall()
    flows.forget(conn, queue, [(r[0], r[1]) for r in gone], woken)
    return bool(gone)


def retry(conn: sqlite3.Connection, queue: str, job_id: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM jobs WHERE queue = ? AND id = ? AND state = 'failed'", (queue, job_id)
    ).fetchone()
    if found is None:
        return False
    conn.execute(
        "UPDATE jobs SET state = 'waiting', score = priority, seq = ?, attempts_made = 0, "
        "stalls = 0, failed_reason = NULL, stacktrace = NULL, finished_on = NULL, "
        "processed_on = NULL, cancel_reason = NULL WHERE queue = ? AND id = ?",
        (take_seqs(conn, queue, 1), queue, job_id),
    )
    return True


def promote(conn: sqlite3.Connection, queue: str, job_id: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM jobs WHERE queue = ? AND id = ? AND state = 'delayed'", (queue, job_id)
    ).fetchone()
    if found is None:
        return False
    conn.execute(
        "UPDATE jobs SET state = 'waiting', score = priority, seq = ?, run_at = ? "
        "WHERE queue = ? AND id = ?",
        (take_seqs(conn, queue, 1), time.time(), queue, job_id),
    )
    return True


def get_metrics(conn: sqlite3.Connection, queue: str, since: float) -> list[MinuteMetrics]:
    rows = conn.execute(
        "SELECT minute, completed, failed, time_sum FROM metrics WHERE queue = ? AND minute >= ? "
        "ORDER BY minute",
        (queue, minute_of(since)),
    ).fetchall()
    return [MinuteMetrics(float(r[0]), int(r[1]), int(r[2]), float(r[3])) for r in rows]


def obliterate(conn: sqlite3.Connection, queue: str, woken: set[str]) -> None:
    gone = conn.execute("DELETE FROM jobs WHERE queue = ? RETURNING id, state", (queue,))
    flows.forget(conn, queue, [(r[0], r[1]) for r in gone.fetchall()], woken)
    tables = (
        "schedules",
        "workers",
        "queue_meta",
        "rate_starts",
        "dedup",
        "job_deps",
        "metrics",
        "job_groups",
        "group_starts",
    )
    for table in tables:
        conn.execute(f"DELETE FROM {table} WHERE queue = ?", (queue,))
    conn.execute("DELETE FROM job_logs WHERE queue = ?", (queue,))


# -- rate limits -----------------------------------------------------------------------------
def set_rate_limit(conn: sqlite3.Connection, queue: str, limit: RateLimit | None) -> None:
    meta(conn, queue)
    conn.execute(
        "UPDATE queue_meta SET rate_max = ?, rate_duration = ? WHERE queue = ?",
        (None, None, queue) if limit is None else (limit.max, limit.duration, queue),
    )
    if limit is None:
        conn.execute("DELETE FROM rate_starts WHERE queue = ?", (queue,))


def set_global_concurrency(conn: sqlite3.Connection, queue: str, limit: int | None) -> None:
    meta(conn, queue)
    conn.execute("UPDATE queue_meta SET concurrency = ? WHERE queue = ?", (limit, queue))


def set_group_concurrency(conn: sqlite3.Connection, queue: str, limit: int | None) -> None:
    meta(conn, queue)
    conn.execute("UPDATE queue_meta SET group_concurrency = ? WHERE queue = ?", (limit, queue))


def get_group_concurrency(conn: sqlite3.Connection, queue: str) -> int | None:
    row = conn.execute(
        "SELECT group_concurrency FROM queue_meta WHERE queue = ?", (queue,)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def set_group_rate_limit(conn: sqlite3.Connection, queue: str, limit: RateLimit | None) -> None:
    meta(conn, queue)
    conn.execute(
        "UPDATE queue_meta SET group_rate_max = ?, group_rate_duration = ? WHERE queue = ?",
        (None, None, queue) if limit is None else (limit.max, limit.duration, queue),
    )
    if limit is None:
        conn.execute("DELETE FROM group_starts WHERE queue = ?", (queue,))


def get_group_rate_limit(conn: sqlite3.Connection, queue: str) -> RateLimit | None:
    row = conn.execute(
        "SELECT group_rate_max, group_rate_duration FROM queue_meta WHERE queue = ? "
        "AND group_rate_max IS NOT NULL",
        (queue,),
    ).fetchone()
    return None if row is None else RateLimit(int(row[0]), float(row[1]))


def hold_group(conn: sqlite3.Connection, queue: str, group: str, until: float) -> None:
    meta(conn, queue)
    conn.execute(
        "INSERT INTO job_groups (queue, grp, held_until) VALUES (?, ?, ?) "
        "ON CONFLICT (queue, grp) DO UPDATE SET held_until = max(held_until, excluded.held_until)",
        (queue, group, until),
    )


def get_global_concurrency(conn: sqlite3.Connection, queue: str) -> int | None:
    row = conn.execute("SELECT concurrency FROM queue_meta WHERE queue = ?", (queue,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def get_rate_limit(conn: sqlite3.Connection, queue: str) -> RateLimit | None:
    row = conn.execute(
        "SELECT rate_max, rate_duration FROM queue_meta WHERE queue = ? AND rate_max IS NOT NULL",
        (queue,),
    ).fetchone()
    return None if row is None else RateLimit(int(row[0]), float(row[1]))


def hold(conn: sqlite3.Connection, queue: str, until: float) -> None:
    meta(conn, queue)
    conn.execute(
        "UPDATE queue_meta SET hold_until = max(hold_until, ?) WHERE queue = ?", (until, queue)
    )


# -- schedules -------------------------------------------------------------------------------
SCHEDULE_COLUMNS = "key, name, data, opts, next_run, every, cron, tz, missed, grace, created"


def _schedule(row: sqlite3.Row) -> ScheduleRecord:
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


def save_schedule(conn: sqlite3.Connection, queue: str, schedule: ScheduleRecord) -> ScheduleRecord:
    row = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE queue = ? AND key = ?",
        (queue, schedule.key),
    ).fetchone()
    next_run = schedule.next_run
    if row is not None:
        old = _schedule(row)
        if old.same_definition(schedule):
            next_run = old.next_run
    s = schedule
    conn.execute(
        f"INSERT OR REPLACE INTO schedules (queue, {SCHEDULE_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            queue,
            s.key,
            s.name,
            s.data_json,
            json.dumps(s.opts),
            next_run,
            s.every,
            s.cron,
            s.tz,
            s.missed,
            s.grace,
            s.created,
        ),
    )
    stored = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE queue = ? AND key = ?",
        (queue, schedule.key),
    ).fetchone()
    return _schedule(stored)


def get_schedules(conn: sqlite3.Connection, queue: str) -> list[ScheduleRecord]:
    rows = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE queue = ? ORDER BY created, key", (queue,)
    )
    return [_schedule(row) for row in rows]


def remove_schedule(conn: sqlite3.Connection, queue: str, key: str) -> bool:
    cur = conn.execute("DELETE FROM schedules WHERE queue = ? AND key = ?", (queue, key))
    return cur.rowcount > 0


def advance_schedule(
    conn: sqlite3.Connection,
    queue: str,
    key: str,
    expected_next: float,
    next_run: float,
    jobs: Sequence[NewJob],
) -> bool:
    cur = conn.execute(
        "UPDATE schedules SET next_run = ? WHERE queue = ? AND key = ? AND next_run = ?",
        (next_run, queue, key, expected_next),
    )
    if cur.rowcount == 0:
        return False
    add(conn, queue, jobs, time.time())
    return True


# -- worker registry -------------------------------------------------------------------------
def heartbeat(conn: sqlite3.Connection, info: WorkerInfo, ttl: float) -> None:
    now = time.time()
    conn.execute("DELETE FROM workers WHERE queue = ? AND expires <= ?", (info.queue, now))
    conn.execute(
        "INSERT OR REPLACE INTO workers (queue, id, host, pid, concurrency, started, last_seen, "
        "active, expires, fetched) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            info.queue,
            info.id,
            info.host,
            info.pid,
            info.concurrency,
            info.started,
            now,
            info.active,
            now + ttl,
            info.fetched,
        ),
    )


def unregister(conn: sqlite3.Connection, queue: str, worker_id: str) -> None:
    conn.execute("DELETE FROM workers WHERE queue = ? AND id = ?", (queue, worker_id))


def list_workers(conn: sqlite3.Connection, queue: str) -> list[WorkerInfo]:
    rows = conn.execute(
        "SELECT id, queue, host, pid, concurrency, started, last_seen, active, fetched "
        "FROM workers "
        "WHERE queue = ? AND expires > ? ORDER BY started, id",
        (queue, time.time()),
    )
    return [WorkerInfo(*row) for row in rows]
