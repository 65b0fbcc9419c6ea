"""Job transitions on one SQLite connection: each function is the body of one transaction.

The functions here run inside ``BEGIN IMMEDIATE`` on the database thread, or on the event
loop's thread for a short write (see :class:`Database`); they only read and write the database,
so a busy file can rerun them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from polyjobs.backend import (
    METRICS_KEEP,
    AddResult,
    Finish,
    JobRecord,
    JobRef,
    JobState,
    NewJob,
    Stalled,
    count_finish,
    minute_of,
)
from polyjobs.backends.sqlite import flows
from polyjobs.options import KEEP_FAILED, Keep

STALLED_REASON = "job stalled more than allowable limit"
JOB_COLUMNS = (
    "id, name, data, opts, state, timestamp, run_at, priority, attempts_made, attempts_started, "
    "stalls, progress, returnvalue, failed_reason, stacktrace, processed_on, finished_on, "
    "worker, lease_until"
)


def record(row: sqlite3.Row) -> JobRecord:
    state: JobState = row["state"]
    return JobRecord(
        id=row["id"],
        name=row["name"],
        data=json.loads(row["data"]),
        opts=json.loads(row["opts"]),
        state=state,
        timestamp=row["timestamp"],
        run_at=row["run_at"],
        priority=row["priority"],
        attempts_made=row["attempts_made"],
        attempts_started=row["attempts_started"],
        stalls=row["stalls"],
        progress=None if row["progress"] is None else json.loads(row["progress"]),
        returnvalue=None if row["returnvalue"] is None else json.loads(row["returnvalue"]),
        failed_reason=row["failed_reason"],
        stacktrace=row["stacktrace"],
        processed_on=row["processed_on"],
        finished_on=row["finished_on"],
        worker=row["worker"],
        lease_until=row["lease_until"],
    )


# -- queue sequence --------------------------------------------------------------------------
def meta(conn: sqlite3.Connection, queue: str) -> sqlite3.Row:
    conn.execute("INSERT OR IGNORE INTO queue_meta (queue) VALUES (?)", (queue,))
    row: sqlite3.Row = conn.execute(
        "SELECT paused, next_id, seq, has_groups FROM queue_meta WHERE queue = ?", (queue,)
    ).fetchone()
    return row


def take_seqs(conn: sqlite3.Connection, queue: str, n: int) -> int:
    """Reserve ``n`` sequence numbers of ``queue``; return the first."""
    row = conn.execute(
        "UPDATE queue_meta SET seq = seq + ? WHERE queue = ? RETURNING seq", (n, queue)
    ).fetchone()
    if row is None:
        meta(conn, queue)
        return take_seqs(conn, queue, n)
    return int(row[0]) - n + 1


def is_paused(conn: sqlite3.Connection, queue: str) -> bool:
    row = conn.execute("SELECT paused FROM queue_meta WHERE queue = ?", (queue,)).fetchone()
    return bool(row and row[0])


# -- producers -------------------------------------------------------------------------------
def add(
    conn: sqlite3.Connection,
    queue: str,
    jobs: Sequence[NewJob],
    now: float,
    parent: bool = False,
) -> list[AddResult]:
    """Add jobs (``parent``: in ``waiting-children``, for :func:`flows.add_flow`), honouring
    their deduplication windows."""
    row = meta(conn, queue)
    next_id, grouped = int(row["next_id"]), bool(row["has_groups"])
    if not grouped and any(new.group is not None for new in jobs):
        start_groups(conn, queue)
        grouped = True
    seq = take_seqs(conn, queue, len(jobs)) if jobs else 0
    results: list[AddResult] = []
    rows: list[tuple[Any, ...]] = []
    batch: set[str] = set()
    for new in jobs:
        if new.dedup is not None and not (new.job_id and _exists(conn, queue, new.job_id)):
            absorbed = flows.deduplicate(conn, queue, new, now)
            if absorbed is not None:
                results.append(absorbed)
                continue
        if new.job_id is None:
            next_id += 1
            while str(next_id) in batch or _exists(conn, queue, str(next_id)):
                next_id += 1
            job_id = str(next_id)
        elif new.job_id in batch or _exists(conn, queue, new.job_id):
            results.append(AddResult(new.job_id, False))
            continue
        else:
            job_id = new.job_id
        delay = None
        if parent:
            state, score, order = "waiting-children", new.timestamp, seq
            delay = new.run_at - new.timestamp if new.run_at > new.timestamp else None
        elif new.run_at > now:
            state, score, order = "delayed", new.run_at, seq
        else:
            state, score, order = "waiting", float(new.priority), -seq if new.lifo else seq
        seq += 1
        batch.add(job_id)
        grp = _group_of(conn, queue, new) if grouped else None
        rows.append(
            (
                queue,
                job_id,
                new.name,
                new.data_json,
                json.dumps(new.opts),
                state,
                score,
                order,
                new.timestamp,
                new.run_at,
                new.priority,
                new.opts.get("failure_policy"),
                delay,
                grp,
            )
        )
        results.append(AddResult(job_id, True))
        if new.dedup is not None:  # stored now: a later add of this batch may meet it
            _insert(conn, rows)
            rows = []
            flows.hold(conn, queue, new, job_id, now)
    _insert(conn, rows)
    conn.execute("UPDATE queue_meta SET next_id = ? WHERE queue = ?", (next_id, queue))
    return results


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, timestamp, run_at, "
        "priority, policy, parent_delay, grp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _group_of(conn: sqlite3.Connection, queue: str, new: NewJob) -> str:
    """The stored group of a new job of a queue with groups (its ring member known)."""
    if new.group is None:
        return ""
    conn.execute("INSERT OR IGNORE INTO job_groups (queue, grp) VALUES (?, ?)", (queue, new.group))
    return new.group


def regroup(conn: sqlite3.Connection, queue: str, job_id: str, new: NewJob) -> None:
    """A job that took a new add's place (a deduplication ``replace``) takes its group too."""
    if not meta(conn, queue)["has_groups"]:
        if new.group is None:
            return
        start_groups(conn, queue)
    conn.execute(
        "UPDATE jobs SET grp = ? WHERE queue = ? AND id = ?",
        (_group_of(conn, queue, new), queue, job_id),
    )


def start_groups(conn: sqlite3.Connection, queue: str) -> None:
    """The queue's first grouped job: from now on every job of it has a group, ``''`` for the
    jobs without one (they take turns as one member of the ring)."""
    conn.execute("UPDATE queue_meta SET has_groups = 1 WHERE queue = ?", (queue,))
    conn.execute("UPDATE jobs SET grp = '' WHERE queue = ? AND grp IS NULL", (queue,))
    conn.execute("INSERT OR IGNORE INTO job_groups (queue, grp) VALUES (?, '')", (queue,))


def _exists(conn: sqlite3.Connection, queue: str, job_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM jobs WHERE queue = ? AND id = ?", (queue, job_id))
    return row.fetchone() is not None


# -- workers ---------------------------------------------------------------------------------
def ready(conn: sqlite3.Connection, queue: str, now: float) -> tuple[bool, float | None]:
    """A read-only look, outside a transaction: can a job start now, and if not, when should
    a waiting fetch look again (the next delayed job, or the rate limiter letting one start)?"""
    paused, grouped = _flags(conn, queue)
    if paused:
        return False, None
    if grouped:
        return _ready_grouped(conn, queue, now)
    waiting = conn.execute(
        "SELECT 1 FROM jobs WHERE queue = ? AND state = 'waiting' LIMIT 1", (queue,)
    ).fetchone()
    due = conn.execute(
        "SELECT min(score) FROM jobs WHERE queue = ? AND state = 'delayed'", (queue,)
    ).fetchone()[0]
    has_work = waiting is not None or (due is not None and due <= now)
    allowed, frees_at = allowance(conn, queue, now)
    if allowed == 0:
        return False, frees_at if has_work else due
    return has_work, due


#: Seconds after which a fetch that found the global concurrency cap full looks again.
CAP_LOOK_AGAIN = 0.25


def _flags(conn: sqlite3.Connection, queue: str) -> tuple[bool, bool]:
    """Whether the queue is paused, and whether it has ever had a grouped job."""
    row = conn.execute(
        "SELECT paused, has_groups FROM queue_meta WHERE queue = ?", (queue,)
    ).fetchone()
    return (False, False) if row is None else (bool(row[0]), bool(row[1]))


def _ready_grouped(conn: sqlite3.Connection, queue: str, now: float) -> tuple[bool, float | None]:
    """:func:`ready` for a queue with groups: work only when some group may start a job."""
    due = conn.execute(
        "SELECT min(score) FROM jobs WHERE queue = ? AND state = 'delayed'", (queue,)
    ).fetchone()[0]
    if due is not None and due <= now:
        return True, due
    allowed, frees_at = allowance(conn, queue, now)
    ring, group_free_at = group_ring(conn, queue, now)
    if allowed == 0:
        return False, frees_at if ring else due
    if ring:
        return True, due
    looks = [t for t in (due, group_free_at) if t is not None]
    return False, min(looks) if looks else None


def group_ring(
    conn: sqlite3.Connection, queue: str, now: float
) -> tuple[list[tuple[int, str, int | None]], float | None]:
    """The ring of groups that may start a job now, least recently served first, as
    (last turn, group, how many more may start now or None), and when a held, full or
    rate-limited group with waiting jobs may next start one."""
    limits = conn.execute(
        "SELECT group_concurrency, group_rate_max, group_rate_duration FROM queue_meta "
        "WHERE queue = ?",
        (queue,),
    ).fetchone()
    cap, rate_max, rate_dur = limits[0], limits[1], limits[2]
    rows = conn.execute(
        "SELECT g.grp, g.served, g.held_until FROM job_groups AS g WHERE g.queue = ? AND "
        "EXISTS (SELECT 1 FROM jobs AS j WHERE j.queue = g.queue AND j.grp = g.grp "
        "AND j.state = 'waiting')",
        (queue,),
    ).fetchall()
    active: dict[str, int] = {}
    if cap is not None:
        active = dict(
            conn.execute(
                "SELECT grp, count(*) FROM jobs WHERE queue = ? AND state = 'active' "
                "AND grp IS NOT NULL GROUP BY grp",
                (queue,),
            ).fetchall()
        )
    started: dict[str, int] = {}
    if rate_max is not None:
        started = dict(
            conn.execute(
                "SELECT grp, count(*) FROM group_starts WHERE queue = ? AND at > ? GROUP BY grp",
                (queue, now - rate_dur),
            ).fetchall()
        )
    ring: list[tuple[int, str, int | None]] = []
    free_at: float | None = None
    for grp, served, held_until in rows:
        wait, left = None, None
        if grp and held_until > now:
            wait = float(held_until)
        elif grp and cap is not None and active.get(grp, 0) >= cap:
            wait = now + CAP_LOOK_AGAIN  # a slot frees when one of its jobs ends
        elif grp and rate_max is not None and started.get(grp, 0) >= rate_max:
            oldest = conn.execute(
                "SELECT at FROM group_starts WHERE queue = ? AND grp = ? AND at > ? "
                "ORDER BY at LIMIT 1 OFFSET ?",
                (queue, grp, now - rate_dur, started[grp] - rate_max),
            ).fetchone()[0]
            wait = float(oldest) + rate_dur
        if wait is not None:
            free_at = wait if free_at is None else min(free_at, wait)
            continue
        if grp and cap is not None:
            left = cap - active.get(grp, 0)
        if grp and rate_max is not None:
            more = rate_max - started.get(grp, 0)
            left = more if left is None else min(left, more)
        ring.append((int(served), grp, left))
    ring.sort()
    return ring, free_at


def allowance(conn: sqlite3.Connection, queue: str, now: float) -> tuple[int | None, float | None]:
    """How many jobs may start now under the hold, the global concurrency cap and the rate
    limit (None: no limit), and, when none may, the time to look again."""
    row = conn.execute(
        "SELECT rate_max, rate_duration, hold_until, concurrency FROM queue_meta WHERE queue = ?",
        (queue,),
    ).fetchone()
    if row is None:
        return None, None
    if row["hold_until"] > now:
        return 0, float(row["hold_until"])
    if row["concurrency"] is not None:
        active = conn.execute(
            "SELECT count(*) FROM jobs WHERE queue = ? AND state = 'active'", (queue,)
        ).fetchone()[0]
        free = int(row["concurrency"]) - int(active)
        if free <= 0:  # a slot frees when some job ends: look again soon
            return 0, now + CAP_LOOK_AGAIN
        if row["rate_max"] is None:
            return free, None
        allowed, frees_at = _rate_allowance(conn, queue, row, now)
        return min(free, allowed), frees_at
    if row["rate_max"] is None:
        return None, None
    return _rate_allowance(conn, queue, row, now)


def _rate_allowance(
    conn: sqlite3.Connection, queue: str, row: sqlite3.Row, now: float
) -> tuple[int, float | None]:
    since = now - row["rate_duration"]
    started = conn.execute(
        "SELECT count(*) FROM rate_starts WHERE queue = ? AND at > ?", (queue, since)
    ).fetchone()[0]
    left = int(row["rate_max"]) - int(started)
    if left > 0:
        return left, None
    # one may start once all but max - 1 of these starts have left the window (more than max
    # are there when the limit was just lowered)
    oldest = conn.execute(
        "SELECT at FROM rate_starts WHERE queue = ? AND at > ? ORDER BY at LIMIT 1 OFFSET ?",
        (queue, since, -left),
    ).fetchone()[0]
    return 0, float(oldest) + row["rate_duration"]


def _count_starts(conn: sqlite3.Connection, queue: str, n: int, now: float) -> None:
    row = conn.execute(
        "SELECT rate_duration FROM queue_meta WHERE queue = ? AND rate_max IS NOT NULL", (queue,)
    ).fetchone()
    if row is None:
        return
    conn.execute("DELETE FROM rate_starts WHERE queue = ? AND at <= ?", (queue, now - row[0]))
    conn.executemany("INSERT INTO rate_starts (queue, at) VALUES (?, ?)", [(queue, now)] * n)


def promote_due(conn: sqlite3.Connection, queue: str, now: float) -> int:
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM jobs WHERE queue = ? AND state = 'delayed' AND score <= ? "
            "ORDER BY score, seq",
            (queue, now),
        )
    ]
    if ids:
        first = take_seqs(conn, queue, len(ids))
        conn.executemany(
            "UPDATE jobs SET state = 'waiting', score = priority, seq = ? "
            "WHERE queue = ? AND id = ?",
            [(first + i, queue, job_id) for i, job_id in enumerate(ids)],
        )
    return len(ids)


def take(
    conn: sqlite3.Connection, queue: str, token: str, limit: int, lease: float
) -> list[JobRecord]:
    """Promote due delayed jobs, then move up to ``limit`` waiting jobs to ``active``."""
    now = time.time()
    promote_due(conn, queue, now)
    if limit <= 0:
        return []
    paused, grouped = _flags(conn, queue)
    if paused:
        return []
    allowed, _ = allowance(conn, queue, now)
    if allowed is not None:
        limit = min(limit, allowed)
        if limit <= 0:
            return []
    if grouped:
        picked = _pick_grouped(conn, queue, limit, now)
    else:
        picked = conn.execute(
            "SELECT rowid FROM jobs WHERE queue = ? AND state = 'waiting' "
            "ORDER BY score, seq LIMIT ?",
            (queue, limit),
        ).fetchall()
    if not picked:
        return []
    first = take_seqs(conn, queue, len(picked))
    # seq now records the fetch order, which is how ``active`` is listed and released
    rows = conn.execute(
        f"UPDATE jobs SET state = 'active', worker = ?, lease_until = ?, processed_on = ?, "
        f"score = ?, seq = ? + pick.n, attempts_started = attempts_started + 1 "
        f"FROM (SELECT value AS rid, key AS n FROM json_each(?)) AS pick "
        f"WHERE jobs.rowid = pick.rid RETURNING {JOB_COLUMNS}, jobs.seq AS s",
        (token, now + lease, now, now, first, json.dumps([r[0] for r in picked])),
    ).fetchall()
    rows.sort(key=lambda r: int(r["s"]))
    _count_starts(conn, queue, len(rows), now)
    return [record(r) for r in rows]


#: Every so many turns a take forgets the groups none of whose jobs is left (their rows would
#: otherwise make every take's ring longer, one per group ever seen). The turns are counted in
#: ``queue_meta.group_turns``, by every process alike and in the take's own transaction (not
#: read off the queue's sequence, which adds and finishes advance too: a multiple passed in one
#: of those was never seen by a take, and a worker could go on without pruning at all).
PRUNE_EVERY = 256


def _prune_groups(conn: sqlite3.Connection, queue: str, now: float) -> None:
    """Forget the groups of ``queue`` with no job left in any state and no hold (a job that
    exists keeps its group's row, so whatever brings it back to waiting finds the row)."""
    conn.execute(
        "DELETE FROM job_groups AS g WHERE g.queue = ? AND g.grp != '' AND g.held_until <= ? "
        "AND NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.queue = g.queue AND j.grp = g.grp)",
        (queue, now),
    )


def _pick_grouped(conn: sqlite3.Connection, queue: str, limit: int, now: float) -> list[tuple[int]]:
    """The rowids of up to ``limit`` waiting jobs, one per ready group in turn (see
    GroupBackend); records each group's turn and, under a group rate limit, its starts."""
    ring, _ = group_ring(conn, queue, now)
    firsts: dict[str, list[int]] = {}
    picked: list[tuple[int]] = []
    turns: list[str] = []
    while ring and len(picked) < limit:
        later: list[tuple[int, str, int | None]] = []
        for entry in ring:
            served, grp, left = entry
            if len(picked) >= limit:
                later.append(entry)
                continue
            ids = firsts.get(grp)
            if ids is None:
                want = limit if left is None else min(left, limit)
                ids = firsts[grp] = [
                    r[0]
                    for r in conn.execute(
                        "SELECT rowid FROM jobs WHERE queue = ? AND grp = ? AND state = 'waiting'"
                        " ORDER BY score, seq LIMIT ?",
                        (queue, grp, want),
                    )
                ]
                ids.reverse()
            if not ids:
                continue
            picked.append((ids.pop(),))
            turns.append(grp)
            left = None if left is None else left - 1
            if ids and (left is None or left > 0):
                later.append((served, grp, left))
        ring = later
    if turns:
        # the queue's row exists: its groups were found in it
        seq, taken = conn.execute(
            "UPDATE queue_meta SET seq = seq + ?, group_turns = group_turns + ? WHERE queue = ? "
            "RETURNING seq, group_turns",
            (len(turns), len(turns), queue),
        ).fetchone()
        first = int(seq) - len(turns) + 1
        if taken >= PRUNE_EVERY:
            _prune_groups(conn, queue, now)
            conn.execute("UPDATE queue_meta SET group_turns = 0 WHERE queue = ?", (queue,))
        last = {grp: first + i for i, grp in enumerate(turns)}
        conn.executemany(
            "UPDATE job_groups SET served = ? WHERE queue = ? AND grp = ?",
            [(served, queue, grp) for grp, served in last.items()],
        )
        rate = conn.execute(
            "SELECT group_rate_duration FROM queue_meta WHERE queue = ? "
            "AND group_rate_max IS NOT NULL",
            (queue,),
        ).fetchone()
        if rate is not None:
            conn.execute(
                "DELETE FROM group_starts WHERE queue = ? AND at <= ?", (queue, now - rate[0])
            )
            conn.executemany(
                "INSERT INTO group_starts (queue, grp, at) VALUES (?, ?, ?)",
                [(queue, grp, now) for grp in turns if grp],
            )
    return picked


def extend(
    conn: sqlite3.Connection, queue: str, token: str, job_ids: Sequence[str], lease: float
) -> list[str]:
    until = time.time() + lease
    lost = []
    for job_id in job_ids:
        cur = conn.execute(
            "UPDATE jobs SET lease_until = ? WHERE queue = ? AND id = ? AND state = 'active' "
            "AND worker = ?",
            (until, queue, job_id, token),
        )
        if cur.rowcount == 0:
            lost.append(job_id)
    return lost


def finish(
    conn: sqlite3.Connection,
    queue: str,
    token: str,
    finishes: Sequence[Finish],
    fetch: int,
    lease: float,
    woken: set[str],
) -> tuple[list[str], list[JobRecord]]:
    lost: list[str] = []
    pending: tuple[str, Keep, float] | None = None  # a trim deferred while the next matches
    edges, windows = flows.has_edges(conn), flows.has_windows(conn, queue)
    counts: dict[float, list[float]] = {}
    for fin in finishes:
        if fin.status != "retry" and pending is not None and pending[:2] != (fin.status, fin.keep):
            retain(conn, queue, *pending, woken)
            pending = None
        target = _finish_one(conn, queue, token, fin, edges or windows, counts)
        if target is None:
            lost.append(fin.job_id)
            continue
        if target in ("completed", "failed"):
            if edges or windows:
                _ended(conn, queue, fin, edges, windows, woken)
                if fin.keep.removes_at_once:
                    _delete(conn, queue, fin.job_id, woken)
            if not fin.keep.removes_at_once:
                pending = (target, fin.keep, fin.finished_on)
    if pending is not None:
        retain(conn, queue, *pending, woken)
    if counts:
        store_metrics(conn, queue, counts)
    jobs = take(conn, queue, token, fetch, lease) if fetch > 0 else []
    return lost, jobs


def store_metrics(conn: sqlite3.Connection, queue: str, counts: dict[float, list[float]]) -> None:
    """Add a finish call's counts to its minutes and forget the minutes past the keep."""
    conn.executemany(
        "INSERT INTO metrics (queue, minute, completed, failed, time_sum) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (queue, minute) DO UPDATE SET completed = completed + excluded.completed, "
        "failed = failed + excluded.failed, time_sum = time_sum + excluded.time_sum",
        [(queue, minute, int(c), int(f), t) for minute, (c, f, t) in counts.items()],
    )
    conn.execute(
        "DELETE FROM metrics WHERE queue = ? AND minute < "
        "(SELECT max(minute) FROM metrics WHERE queue = ?) - ?",
        (queue, queue, METRICS_KEEP),
    )


def _count(counts: dict[float, list[float]], fin: Finish, processed_on: float | None) -> None:
    count_finish(counts.setdefault(minute_of(fin.finished_on), [0, 0, 0.0]), fin, processed_on)


#: The owner a job not yet started is given for the moment its cancel fails it.
CANCEL_TOKEN = "\x00cancel"


def cancel(
    conn: sqlite3.Connection, queue: str, job_id: str, reason: str, now: float, woken: set[str]
) -> str | None:
    """A waiting or delayed job fails through the finish path; an active one is marked."""
    row = conn.execute(
        "SELECT state FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)
    ).fetchone()
    if row is None:
        return None
    if row["state"] == "active":
        conn.execute(
            "UPDATE jobs SET cancel_reason = ? WHERE queue = ? AND id = ?", (reason, queue, job_id)
        )
        return "requested"
    if row["state"] not in ("waiting", "delayed"):
        return None
    conn.execute(
        "UPDATE jobs SET state = 'active', worker = ? WHERE queue = ? AND id = ?",
        (CANCEL_TOKEN, queue, job_id),
    )
    attempts = conn.execute(
        "SELECT attempts_made FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)
    ).fetchone()[0]
    fin = Finish(job_id, "failed", attempts, now, failed_reason=reason)
    finish(conn, queue, CANCEL_TOKEN, [fin], 0, 0.0, woken)
    return "failed"


def cancel_requests(conn: sqlite3.Connection, queue: str, job_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    ids = list(job_ids)
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ",".join("?" * len(part))
        rows = conn.execute(
            f"SELECT id, cancel_reason FROM jobs WHERE queue = ? AND id IN ({marks}) "
            "AND cancel_reason IS NOT NULL",
            (queue, *part),
        ).fetchall()
        found.update({r[0]: r[1] for r in rows})
    return found


def _ended(
    conn: sqlite3.Connection,
    queue: str,
    fin: Finish,
    edges: bool,
    windows: bool,
    woken: set[str],
) -> None:
    """What a job's end does to its parents and to the window it holds."""
    if edges and fin.status == "completed":
        flows.completed(conn, queue, fin.job_id, fin.returnvalue_json or "null", woken)
    elif edges:
        flows.cascade(conn, [(JobRef(queue, fin.job_id), fin.failed_reason or "")], woken)
    if windows:
        flows.window_ends(conn, queue, fin.job_id, fin.finished_on)
        woken.add(queue)


def _delete(conn: sqlite3.Connection, queue: str, job_id: str, woken: set[str]) -> None:
    gone = conn.execute(
        "DELETE FROM jobs WHERE queue = ? AND id = ? RETURNING id, state", (queue, job_id)
    ).fetchall()
    flows.forget(conn, queue, [(r[0], r[1]) for r in gone], woken)


def _finish_one(
    conn: sqlite3.Connection,
    queue: str,
    token: str,
    fin: Finish,
    settle: bool,
    counts: dict[float, list[float]],
) -> str | None:
    """End one job; return the state it went to, or None when ``token`` does not own it.
    With ``settle`` (flows or windows in use) a finished job is stored in its final state even
    when its retention removes it at once: the caller settles its parents and its window
    first, then deletes it."""
    row = conn.execute(
        "SELECT state, worker, priority, processed_on FROM jobs WHERE queue = ? AND id = ?",
        (queue, fin.job_id),
    ).fetchone()
    if row is None or row["state"] != "active" or row["worker"] != token:
        return None
    key = (queue, fin.job_id)
    seq = take_seqs(conn, queue, 1)
    if fin.status == "retry":
        delayed = fin.retry_at > fin.finished_on
        state = "delayed" if delayed else "waiting"
        conn.execute(
            "UPDATE jobs SET state = ?, score = ?, seq = ?, run_at = ?, attempts_made = ?, "
            "failed_reason = ?, stacktrace = ?, worker = NULL, lease_until = NULL "
            "WHERE queue = ? AND id = ?",
            (
                state,
                fin.retry_at if delayed else row["priority"],
                seq,
                fin.retry_at,
                fin.attempts_made,
                fin.failed_reason,
                fin.stacktrace,
                *key,
            ),
        )
        return state
    _count(counts, fin, row["processed_on"])
    if fin.keep.removes_at_once and not settle:
        conn.execute("DELETE FROM jobs WHERE queue = ? AND id = ?", key)
        return fin.status
    if fin.status == "completed":
        conn.execute(
            "UPDATE jobs SET state = 'completed', score = ?, seq = ?, finished_on = ?, "
            "attempts_made = ?, returnvalue = ?, worker = NULL, lease_until = NULL "
            "WHERE queue = ? AND id = ?",
            (fin.finished_on, seq, fin.finished_on, fin.attempts_made, fin.returnvalue_json, *key),
        )
    else:
        conn.execute(
            "UPDATE jobs SET state = 'failed', score = ?, seq = ?, finished_on = ?, "
            "attempts_made = ?, failed_reason = ?, stacktrace = ?, worker = NULL, "
            "lease_until = NULL WHERE queue = ? AND id = ?",
            (
                fin.finished_on,
                seq,
                fin.finished_on,
                fin.attempts_made,
                fin.failed_reason,
                fin.stacktrace,
                *key,
            ),
        )
    return fin.status


def retain(
    conn: sqlite3.Connection, queue: str, state: str, keep: Keep, now: float, woken: set[str]
) -> None:
    """Apply retention to the finished jobs of ``state`` (oldest go first)."""
    gone: list[tuple[str, str]] = []
    if keep.age is not None:
        gone += conn.execute(
            "DELETE FROM jobs WHERE queue = ? AND state = ? AND score < ? RETURNING id, state",
            (queue, state, now - keep.age),
        ).fetchall()
    if keep.count is not None:
        gone += conn.execute(
            "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE queue = ? AND "
            "state = ? ORDER BY score DESC, seq DESC LIMIT -1 OFFSET ?) RETURNING id, state",
            (queue, state, keep.count),
        ).fetchall()
    flows.forget(conn, queue, [(r[0], r[1]) for r in gone], woken)


def release(
    conn: sqlite3.Connection, queue: str, token: str, job_ids: Sequence[str] | None
) -> list[str]:
    rows = conn.execute(
        "SELECT id FROM jobs WHERE queue = ? AND state = 'active' AND worker = ? "
        "ORDER BY score, seq",
        (queue, token),
    ).fetchall()
    owned = [r[0] for r in rows]
    if job_ids is not None:
        mine = set(owned)
        owned = [i for i in dict.fromkeys(job_ids) if i in mine]
    ids = owned
    if not ids:
        return []
    first = take_seqs(conn, queue, len(ids))
    # each released job goes before the previous one, as in the in-memory backend
    conn.executemany(
        "UPDATE jobs SET state = 'waiting', score = priority, seq = ?, worker = NULL, "
        "lease_until = NULL WHERE queue = ? AND id = ?",
        [(-(first + i), queue, job_id) for i, job_id in enumerate(ids)],
    )
    return ids


def recover_stalled(
    conn: sqlite3.Connection, queue: str, max_stalls: int, woken: set[str]
) -> list[Stalled]:
    now = time.time()
    rows = conn.execute(
        "SELECT id, stalls, opts FROM jobs WHERE queue = ? AND state = 'active' "
        "AND lease_until <= ? ORDER BY score, seq",
        (queue, now),
    ).fetchall()
    out: list[Stalled] = []
    for row in rows:
        key = (queue, row["id"])
        stalls = row["stalls"] + 1
        seq = take_seqs(conn, queue, 1)
        if stalls > max_stalls:
            conn.execute(
                "UPDATE jobs SET state = 'failed', score = ?, seq = ?, stalls = ?, "
                "failed_reason = ?, finished_on = ?, worker = NULL, lease_until = NULL "
                "WHERE queue = ? AND id = ?",
                (now, seq, stalls, STALLED_REASON, now, *key),
            )
            ref = JobRef(queue, row["id"])
            flows.cascade(conn, [(ref, STALLED_REASON)], woken)
            flows.window_ends(conn, queue, ref.id, now)
            keep = Keep.from_json(json.loads(row["opts"]).get("remove_on_fail"), KEEP_FAILED)
            retain(conn, queue, "failed", keep, now, woken)
            out.append(Stalled(row["id"], True))
        else:
            conn.execute(
                "UPDATE jobs SET state = 'waiting', score = priority, seq = ?, stalls = ?, "
                "worker = NULL, lease_until = NULL WHERE queue = ? AND id = ?",
                (seq, stalls, *key),
            )
            out.append(Stalled(row["id"], False))
    return out
