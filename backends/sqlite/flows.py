"""Flows and deduplication windows on one SQLite connection (the rules are in
``FlowBackend`` and ``DedupBackend`` of :mod:`polyjobs.backend`).

Every function runs inside the transaction of the transition that calls it, so a parent moves
in the same commit as the finish, removal or stall of its last child. ``woken`` collects the
queues whose waiting fetches (in this process) should look again after the commit.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from polyjobs.backend import AddResult, Dependencies, FlowNode, JobRef, JobState, NewJob
from polyjobs.backends.sqlite import jobs
from polyjobs.errors import InvalidArgumentError
from polyjobs.options import KEEP_FAILED, Keep

#: (id, state) of deleted jobs of one queue, as ``DELETE ... RETURNING id, state`` gives them.
Gone = Sequence[tuple[str, str]]


def has_edges(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM job_deps)").fetchone()[0])


def has_windows(conn: sqlite3.Connection, queue: str) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM dedup WHERE queue = ?)", (queue,))
    return bool(row.fetchone()[0])


# -- adding a flow ---------------------------------------------------------------------------
def add_flow(
    conn: sqlite3.Connection, nodes: Sequence[FlowNode], woken: set[str]
) -> list[AddResult]:
    now = time.time()
    existing = [_check(conn, node) for node in nodes]
    results: list[AddResult] = []
    refs: list[JobRef] = []
    i = 0
    while i < len(nodes):
        node, there = nodes[i], existing[i]
        woken.add(node.queue)
        if there is not None:
            results.append(AddResult(there, False))
            refs.append(JobRef(node.queue, there))
            i += 1
            continue
        # a run of new nodes of one queue, all parents or all leaves: one insert
        end = i + 1
        while (
            end < len(nodes)
            and existing[end] is None
            and nodes[end].queue == node.queue
            and bool(nodes[end].children) == bool(node.children)
        ):
            end += 1
        batch = [n.job for n in nodes[i:end] if n.job is not None]
        added = jobs.add(conn, node.queue, batch, now, parent=bool(node.children))
        results += added
        refs += [JobRef(node.queue, r.id) for r in added]
        for k in range(i, end):
            if nodes[k].children:
                _link(conn, refs[k], [refs[c] for c in nodes[k].children], woken)
        i = end
    return results


def _check(conn: sqlite3.Connection, node: FlowNode) -> str | None:
    """The id of the existing job a node stands for, or None for a new job."""
    job_id = node.job.job_id if node.job is not None else node.job_id
    there = job_id is not None and _state(conn, node.queue, job_id) is not None
    if node.job is None and not there:
        raise InvalidArgumentError(f"job {node.queue}:{job_id} of the flow does not exist")
    if there and node.children:
        raise InvalidArgumentError(
            f"job {node.queue}:{job_id} already exists: a flow cannot give it children"
        )
    return job_id if there else None


def _link(
    conn: sqlite3.Connection, parent: JobRef, children: list[JobRef], woken: set[str]
) -> None:
    by_queue: dict[str, list[str]] = {}
    for child in dict.fromkeys(children):
        by_queue.setdefault(child.queue, []).append(child.id)
    rows: list[tuple[Any, ...]] = []
    failed: list[tuple[JobRef, str]] = []
    for queue, ids in by_queue.items():
        found = conn.execute(
            "SELECT id, state, returnvalue, failed_reason FROM jobs WHERE queue = ? "
            "AND id IN (SELECT value FROM json_each(?))",
            (queue, json.dumps(ids)),
        )
        for job_id, state, returnvalue, reason in found:
            status, value = "pending", None
            if state == "completed":
                status, value = "processed", returnvalue or "null"
            elif state == "failed":
                failed.append((JobRef(queue, job_id), reason or ""))
            rows.append((parent.queue, parent.id, queue, job_id, status, value))
    conn.executemany(
        "INSERT INTO job_deps (queue, id, child_queue, child_id, status, value) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    for child, reason in sorted(failed):
        cascade(conn, [(child, reason)], woken, only=parent)
    release_if_done(conn, parent, woken)


# -- transitions -----------------------------------------------------------------------------
def release(conn: sqlite3.Connection, ref: JobRef, woken: set[str]) -> None:
    """Move a parent out of ``waiting-children`` (to delayed when it has a delay)."""
    row = conn.execute(
        "SELECT state, priority, parent_delay FROM jobs WHERE queue = ? AND id = ?",
        (ref.queue, ref.id),
    ).fetchone()
    if row is None or row["state"] != "waiting-children":
        return
    seq = jobs.take_seqs(conn, ref.queue, 1)
    delay = row["parent_delay"] or 0.0
    if delay > 0:
        due = time.time() + delay
        conn.execute(
            "UPDATE jobs SET state = 'delayed', score = ?, seq = ?, run_at = ? "
            "WHERE queue = ? AND id = ?",
            (due, seq, due, ref.queue, ref.id),
        )
    else:
        conn.execute(
            "UPDATE jobs SET state = 'waiting', score = priority, seq = ? "
            "WHERE queue = ? AND id = ?",
            (seq, ref.queue, ref.id),
        )
    woken.add(ref.queue)


def release_if_done(conn: sqlite3.Connection, ref: JobRef, woken: set[str]) -> None:
    pending = conn.execute(
        "SELECT 1 FROM job_deps WHERE queue = ? AND id = ? AND status = 'pending' LIMIT 1",
        (ref.queue, ref.id),
    ).fetchone()
    if pending is None:
        release(conn, ref, woken)


def completed(
    conn: sqlite3.Connection, queue: str, job_id: str, value_json: str, woken: set[str]
) -> None:
    """A child completed: each parent waiting for it keeps its value."""
    parents = conn.execute(
        "UPDATE job_deps SET status = 'processed', value = ? WHERE child_queue = ? "
        "AND child_id = ? AND status = 'pending' RETURNING queue, id",
        (value_json, queue, job_id),
    ).fetchall()
    for pq, pid in parents:
        release_if_done(conn, JobRef(pq, pid), woken)


def cascade(
    conn: sqlite3.Connection,
    work: list[tuple[JobRef, str]],
    woken: set[str],
    only: JobRef | None = None,
) -> None:
    """Apply the failure policies of failed jobs to their parents (``only`` alone when given),
    failing parents in turn; then apply the failed parents' retention."""
    failed: list[tuple[str, str]] = []
    while work:
        child, why = work.pop()
        row = conn.execute(
            "SELECT policy FROM jobs WHERE queue = ? AND id = ?", (child.queue, child.id)
        ).fetchone()
        policy = (row["policy"] if row is not None else None) or "wait"
        if policy == "wait":
            only = None
            continue
        parents = _pending_parents(conn, child) if only is None else [only]
        only = None
        for parent in parents:
            if policy == "fail":
                reason = f"child {child} failed: {why}"
                if fail_waiting(conn, parent, reason):
                    failed.append((parent.queue, parent.id))
                    work.append((parent, reason))
                continue
            if policy == "remove":
                _drop_edge(conn, parent, child)
            else:
                conn.execute(
                    "UPDATE job_deps SET status = 'ignored', value = ? WHERE queue = ? AND id = ? "
                    "AND child_queue = ? AND child_id = ? AND status = 'pending'",
                    (why, parent.queue, parent.id, child.queue, child.id),
                )
            if policy == "continue":
                release(conn, parent, woken)
            else:
                release_if_done(conn, parent, woken)
    _retain_failed(conn, failed, woken)


def _pending_parents(conn: sqlite3.Connection, child: JobRef) -> list[JobRef]:
    rows = conn.execute(
        "SELECT queue, id FROM job_deps WHERE child_queue = ? AND child_id = ? "
        "AND status = 'pending' ORDER BY queue, id",
        (child.queue, child.id),
    ).fetchall()
    return [JobRef(q, i) for q, i in rows]


def _drop_edge(conn: sqlite3.Connection, parent: JobRef, child: JobRef) -> None:
    conn.execute(
        "DELETE FROM job_deps WHERE queue = ? AND id = ? AND child_queue = ? AND child_id = ?",
        (parent.queue, parent.id, child.queue, child.id),
    )


def fail_waiting(conn: sqlite3.Connection, ref: JobRef, reason: str) -> bool:
    """Fail a parent still in ``waiting-children``; True when it was."""
    now = time.time()
    found = conn.execute(
        "SELECT 1 FROM jobs WHERE queue = ? AND id = ? AND state = 'waiting-children'",
        (ref.queue, ref.id),
    ).fetchone()
    if found is None:
        return False
    conn.execute(
        "UPDATE jobs SET state = 'failed', score = ?, seq = ?, failed_reason = ?, "
        "finished_on = ? WHERE queue = ? AND id = ?",
        (now, jobs.take_seqs(conn, ref.queue, 1), reason, now, ref.queue, ref.id),
    )
    return True


def _retain_failed(
    conn: sqlite3.Connection, failed: list[tuple[str, str]], woken: set[str]
) -> None:
    now = time.time()
    for queue, job_id in failed:
        row = conn.execute(
            "SELECT opts FROM jobs WHERE queue = ? AND id = ?", (queue, job_id)
        ).fetchone()
        if row is not None:
            keep = Keep.from_json(json.loads(row["opts"]).get("remove_on_fail"), KEEP_FAILED)
            jobs.retain(conn, queue, "failed", keep, now, woken)


def forget(conn: sqlite3.Connection, queue: str, gone: Gone, woken: set[str]) -> None:
    """Jobs of ``queue`` were deleted: unlink them from their children and parents (a pending
    failed child fails its waiting parents; any other pending child releases them) and free
    the windows they held."""
    if not gone:
        return
    if has_windows(conn, queue):
        conn.executemany(
            "DELETE FROM dedup WHERE queue = ? AND job_id = ?", [(queue, i) for i, _ in gone]
        )
    if not has_edges(conn):
        return
    failed: list[tuple[JobRef, str]] = []
    for job_id, state in gone:
        conn.execute("DELETE FROM job_deps WHERE queue = ? AND id = ?", (queue, job_id))
        ref = JobRef(queue, job_id)
        parents = conn.execute(
            "DELETE FROM job_deps WHERE child_queue = ? AND child_id = ? "
            "AND status = 'pending' RETURNING queue, id",
            (queue, job_id),
        ).fetchall()
        for pq, pid in sorted(parents):
            parent = JobRef(pq, pid)
            if state == "failed":
                failed.append((parent, f"child {ref} failed and was removed"))
            else:
                release_if_done(conn, parent, woken)
    for parent, reason in failed:
        if fail_waiting(conn, parent, reason):
            cascade(conn, [(parent, reason)], woken)
            _retain_failed(conn, [(parent.queue, parent.id)], woken)


# -- reading ---------------------------------------------------------------------------------
def _state(conn: sqlite3.Connection, queue: str, job_id: str) -> JobState | None:
    row = conn.execute("SELECT state FROM jobs WHERE queue = ? AND id = ?", (queue, job_id))
    found = row.fetchone()
    return None if found is None else found[0]


def get_dependencies(conn: sqlite3.Connection, queue: str, job_id: str) -> Dependencies:
    deps = Dependencies()
    rows = conn.execute(
        "SELECT d.child_queue, d.child_id, d.status, d.value, j.state FROM job_deps d "
        "LEFT JOIN jobs j ON j.queue = d.child_queue AND j.id = d.child_id "
        "WHERE d.queue = ? AND d.id = ?",
        (queue, job_id),
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


def get_parents(conn: sqlite3.Connection, queue: str, job_id: str) -> list[JobRef]:
    rows = conn.execute(
        "SELECT d.queue, d.id FROM job_deps d JOIN jobs j ON j.queue = d.queue AND j.id = d.id "
        "WHERE d.child_queue = ? AND d.child_id = ?",
        (queue, job_id),
    )
    return [JobRef(q, i) for q, i in rows]


# -- deduplication windows -------------------------------------------------------------------
def deduplicate(conn: sqlite3.Connection, queue: str, new: NewJob, now: float) -> AddResult | None:
    """The result of an add absorbed by its window, or None when the add goes ahead."""
    d = new.dedup
    assert d is not None
    row = conn.execute(
        "SELECT d.job_id, d.expires, j.state FROM dedup d LEFT JOIN jobs j "
        "ON j.queue = d.queue AND j.id = d.job_id WHERE d.queue = ? AND d.key = ?",
        (queue, d.id),
    ).fetchone()
    if row is None:
        return None
    holder, expires, state = row
    if state is None or (expires is not None and expires <= now):
        conn.execute("DELETE FROM dedup WHERE queue = ? AND key = ?", (queue, d.id))
        return None
    key = (queue, d.id)
    if d.keep_last_if_active and state == "active":
        conn.execute(
            "UPDATE dedup SET next = ?, expires = NULL WHERE queue = ? AND key = ?",
            (_kept(new), *key),
        )
        return AddResult(holder, False, "kept-next")
    if d.extend and d.ttl is not None:
        conn.execute(
            "UPDATE dedup SET expires = ? WHERE queue = ? AND key = ?", (now + d.ttl, *key)
        )
    if d.replace and state in ("waiting", "delayed"):
        delayed = new.run_at > now
        seq = jobs.take_seqs(conn, queue, 1)
        conn.execute(
            "UPDATE jobs SET name = ?, data = ?, opts = ?, priority = ?, run_at = ?, state = ?, "
            "score = ?, seq = ? WHERE queue = ? AND id = ?",
            (
                new.name,
                new.data_json,
                json.dumps(new.opts),
                new.priority,
                new.run_at,
                "delayed" if delayed else "waiting",
                new.run_at if delayed else float(new.priority),
                -seq if new.lifo and not delayed else seq,
                queue,
                holder,
            ),
        )
        jobs.regroup(conn, queue, holder, new)
        return AddResult(holder, False, "replaced")
    return AddResult(holder, False, "ignored")


def hold(conn: sqlite3.Connection, queue: str, new: NewJob, job_id: str, now: float) -> None:
    assert new.dedup is not None
    ttl = new.dedup.ttl
    conn.execute(
        "INSERT OR REPLACE INTO dedup (queue, key, job_id, expires, next) "
        "VALUES (?, ?, ?, ?, NULL)",
        (queue, new.dedup.id, job_id, None if ttl is None else now + ttl),
    )


def _kept(new: NewJob) -> str:
    return json.dumps(
        {
            "name": new.name,
            "data": new.data_json,
            "opts": new.opts,
            "priority": new.priority,
            "lifo": new.lifo,
            "delay": max(new.run_at - new.timestamp, 0.0),
        }
    )


def window_ends(conn: sqlite3.Connection, queue: str, job_id: str, now: float) -> None:
    """A job ended for good: free its window, or add the kept next job as its holder."""
    row = conn.execute(
        "SELECT key, expires, next FROM dedup WHERE queue = ? AND job_id = ?", (queue, job_id)
    ).fetchone()
    if row is None:
        return
    key, expires, kept = row
    if kept is not None:
        k: dict[str, Any] = json.loads(kept)
        fresh = NewJob(
            name=k["name"],
            data_json=k["data"],
            opts=k["opts"],
            timestamp=now,
            run_at=now + k["delay"],
            priority=k["priority"],
            lifo=k["lifo"],
            group=k["opts"].get("group"),
        )
        (result,) = jobs.add(conn, queue, [fresh], now)
        conn.execute(
            "UPDATE dedup SET job_id = ?, next = NULL WHERE queue = ? AND key = ?",
            (result.id, queue, key),
        )
    elif expires is None:
        conn.execute("DELETE FROM dedup WHERE queue = ? AND key = ?", (queue, key))


def get_deduplication(conn: sqlite3.Connection, queue: str, dedup_id: str) -> str | None:
    row = conn.execute(
        "SELECT d.job_id FROM dedup d JOIN jobs j ON j.queue = d.queue AND j.id = d.job_id "
        "WHERE d.queue = ? AND d.key = ? AND (d.expires IS NULL OR d.expires > ?)",
        (queue, dedup_id, time.time()),
    ).fetchone()
    return None if row is None else str(row[0])


def remove_deduplication(conn: sqlite3.Connection, queue: str, dedup_id: str) -> bool:
    held = get_deduplication(conn, queue, dedup_id)
    conn.execute("DELETE FROM dedup WHERE queue = ? AND key = ?", (queue, dedup_id))
    return held is not None
