"""The SQLite backend, ``sqlite:///path/to.db``: every queue in one file, shared by processes.

Each state transition is one ``BEGIN IMMEDIATE`` transaction run on the backend object's own
database thread (:mod:`~polyjobs.backends.sqlite.database`); the SQL lives in
:mod:`~polyjobs.backends.sqlite.jobs` and :mod:`~polyjobs.backends.sqlite.admin`. A fetch with
nothing to do waits without holding any transaction (:mod:`~polyjobs.backends.sqlite.wakeup`).

URL forms: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, and the query
option ``?synchronous=full`` to fsync every commit (the default, ``normal``, survives any crash
of the processes; a power loss may lose the last commits but never corrupts the file).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs

from polyjobs.backend import (
    CAP_CANCEL,
    CAP_CONTROL,
    CAP_DEDUP,
    CAP_DURABLE,
    CAP_FLOWS,
    CAP_FLOWS_ACROSS_QUEUES,
    CAP_GLOBAL_CONCURRENCY,
    CAP_GROUPS,
    CAP_METRICS,
    CAP_RATE_LIMIT,
    CAP_SHARED,
    AddResult,
    CancelOutcome,
    ControlMessage,
    Dependencies,
    Finish,
    FinishResult,
    FlowNode,
    JobRecord,
    JobRef,
    JobState,
    MinuteMetrics,
    NewJob,
    ScheduleRecord,
    Stalled,
    WorkerInfo,
)
from polyjobs.backends.sqlite import admin, control, flows, jobs
from polyjobs.backends.sqlite.database import SHORT_JOBS, Database
from polyjobs.backends.sqlite.wakeup import MAX_POLL, MIN_POLL, POLL_GROWTH, FileSignal, Waiter
from polyjobs.errors import BackendError, InvalidArgumentError
from polyjobs.eventloop import wait_set
from polyjobs.options import RateLimit

SYNCHRONOUS = ("off", "normal", "full", "extra")


def parse_url(url: str) -> tuple[Path, str]:
    """The file path and the ``synchronous`` level of a ``sqlite://`` URL.

    The path is taken literally (no percent-decoding; ``#`` is part of it), so a path from
    the settings needs no quoting; only a final ``?synchronous=...`` is read as an option.
    """
    scheme, sep, rest = url.partition("://")
    if scheme != "sqlite" or not sep:
        raise InvalidArgumentError(f"not a sqlite:// URL: {url!r}")
    path, _, query = rest.partition("?")
    if path.startswith("/"):
        path = path[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    # (sqlite://rel.db, a common slip, is read as a relative path too)
    if not path or path in (":memory:", "."):
        raise InvalidArgumentError(
            f"sqlite URL {url!r} names no file; use sqlite:///path/to.db (relative) or "
            "sqlite:////abs/path.db"
        )
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise InvalidArgumentError(f"unknown sqlite URL options: {', '.join(sorted(unknown))}")
    sync = options.get("synchronous", ["normal"])[-1].lower()
    if sync not in SYNCHRONOUS:
        raise InvalidArgumentError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
    return Path(path), sync.upper()


class SqliteBackend:
    """Every queue in one SQLite file (WAL), shared by any number of processes on one host."""

    capabilities: frozenset[str] = frozenset(
        {
            CAP_SHARED,
            CAP_DURABLE,
            CAP_RATE_LIMIT,
            CAP_CONTROL,
            CAP_FLOWS,
            CAP_FLOWS_ACROSS_QUEUES,
            CAP_DEDUP,
            CAP_METRICS,
            CAP_CANCEL,
            CAP_GLOBAL_CONCURRENCY,
            CAP_GROUPS,
        }
    )

    def __init__(self, url: str) -> None:
        self.url = url
        path, synchronous = parse_url(url)
        self.path = path
        self._db = Database(path, synchronous)
        self._signal: FileSignal | None = None
        self._key = ""
        self._closed = False

    def __repr__(self) -> str:
        return f"<SqliteBackend {self.path}>"

    async def open(self) -> None:
        if self._signal is not None:
            return
        self._closed = False
        await self._db.open()
        self._key = str(self.path.resolve())
        self._signal = FileSignal.acquire(self._key)

    async def close(self) -> None:
        self._closed = True
        signal, self._signal = self._signal, None
        if signal is not None:
            signal.notify()  # waiting fetches of this process return; they look again
            FileSignal.release(self._key, signal)
        await self._db.close()

    def _wake(self, queue: str) -> None:
        if self._signal is not None:
            self._signal.notify(queue)

    def _wake_all(self, queues: set[str]) -> None:
        for queue in queues:
            self._wake(queue)

    # -- producers -------------------------------------------------------------------------
    async def add(self, queue: str, jobs_: Sequence[NewJob]) -> list[AddResult]:
        write = self._db.write_short if len(jobs_) <= SHORT_JOBS else self._db.write
        results = await write(jobs.add, queue, jobs_, time.time())
        if any(r.added for r in results):
            self._wake(queue)
        return results

    # -- workers ---------------------------------------------------------------------------
    async def _take(self, queue: str, token: str, limit: int, lease: float) -> list[JobRecord]:
        ready, _ = await self._db.read_short(jobs.ready, queue, time.time())
        if not ready:
            return []
        return await self._take_now(queue, token, limit, lease)

    async def _take_now(self, queue: str, token: str, limit: int, lease: float) -> list[JobRecord]:
        write = self._db.write_short if limit <= SHORT_JOBS else self._db.write
        return await write(jobs.take, queue, token, limit, lease)

    async def fetch(
        self, queue: str, token: str, limit: int, lease: float, block: float
    ) -> list[JobRecord]:
        found = await self._take_now(queue, token, limit, lease)
        if found or block <= 0:
            return found
        signal = self._signal
        if signal is None:
            return []
        waiter = [signal.register(queue)]
        try:
            return await self._wait_and_take(signal, waiter, queue, token, limit, lease, block)
        except BackendError:
            if self._closed:  # closed while a look was on its way: a close ends a waiting fetch
                return []
            raise
        finally:
            signal.unregister(queue, waiter[0])

    async def _wait_and_take(
        self,
        signal: FileSignal,
        waiter: Waiter,
        queue: str,
        token: str,
        limit: int,
        lease: float,
        block: float,
    ) -> list[JobRecord]:
        """Look for work whenever it may have come: a wake-up from this process, a commit by
        another connection (``data_version`` moved), or the next delayed job falling due.
        ``waiter`` is always registered before the look, so no wake-up falls in between."""
        deadline = time.monotonic() + block
        poll, look = MIN_POLL, True
        version = await self._db.read_short(_data_version)
        due: float | None = None
        while not self._closed:
            if look:
                ready, due = await self._db.read_short(jobs.ready, queue, time.time())
                if ready:
                    found = await self._take_now(queue, token, limit, lease)
                    if found:
                        return found
                    due = None  # another fetch was quicker: wait for the next change
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            timeout = min(poll, remaining)
            if due is not None:
                timeout = min(timeout, max(due - time.time(), 0.0))
            poked = False
            if await wait_set(waiter[0], timeout):
                if waiter[0].look:  # told by this process
                    signal.unregister(queue, waiter[0])
                    waiter[0] = signal.register(queue)
                    poll, look = MIN_POLL, True
                    continue
                waiter[0].clear()  # the write-ahead log was written: read data_version now
                poked = True
            current = await self._db.read_short(_data_version)
            look = current != version or (due is not None and due <= time.time())
            if current != version or poked:
                # a write seen before its commit is published: the polls find it, quickly
                poll = MIN_POLL
            else:
                poll = min(poll * POLL_GROWTH, MAX_POLL)
            version = current
        return []

    async def extend(
        self, queue: str, token: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        if not job_ids:
            return []
        return await self._db.write(jobs.extend, queue, token, job_ids, lease)

    async def finish(
        self, queue: str, token: str, finishes: Sequence[Finish], fetch: int, lease: float
    ) -> FinishResult:
        woken: set[str] = set()
        write = self._db.write_short if len(finishes) + fetch <= SHORT_JOBS else self._db.write
        lost, taken = await write(jobs.finish, queue, token, finishes, fetch, lease, woken)
        if any(fin.status == "retry" for fin in finishes):
            woken.add(queue)
        self._wake_all(woken)
        return FinishResult(lost, taken)

    async def release(self, queue: str, token: str, job_ids: Sequence[str] | None) -> list[str]:
        released = await self._db.write(jobs.release, queue, token, job_ids)
        if released:
            self._wake(queue)
        return released

    async def recover_stalled(self, queue: str, max_stalls: int) -> list[Stalled]:
        found = await self._db.read(_has_expired, queue, time.time())
        if not found:
            return []
        woken: set[str] = set()
        stalled = await self._db.write(jobs.recover_stalled, queue, max_stalls, woken)
        if stalled:
            woken.add(queue)
        self._wake_all(woken)
        return stalled

    async def update_progress(self, queue: str, job_id: str, progress_json: str) -> bool:
        return await self._db.write(admin.update_progress, queue, job_id, progress_json)

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        return await self._db.write(admin.add_log, queue, job_id, line, keep)

    # -- inspection ------------------------------------------------------------------------
    async def get_job(self, queue: str, job_id: str) -> JobRecord | None:
        return await self._db.read(admin.get_job, queue, job_id)

    async def get_logs(self, queue: str, job_id: str, start: int, end: int) -> list[str]:
        return await self._db.read(admin.get_logs, queue, job_id, start, end)

    async def list_jobs(self, queue: str, state: JobState, start: int, end: int) -> list[JobRecord]:
        return await self._db.read(admin.list_jobs, queue, state, start, end)

    async def get_metrics(self, queue: str, since: float) -> list[MinuteMetrics]:
        return await self._db.read(admin.get_metrics, queue, since)

    async def counts(self, queue: str) -> dict[str, int]:
        return await self._db.read(admin.counts, queue)

    async def queues(self) -> list[str]:
        return await self._db.read(admin.queues)

    # -- administration --------------------------------------------------------------------
    async def pause(self, queue: str) -> None:
        await self._db.write(admin.set_paused, queue, True)

    async def resume(self, queue: str) -> None:
        await self._db.write(admin.set_paused, queue, False)
        self._wake(queue)

    async def is_paused(self, queue: str) -> bool:
        return await self._db.read(jobs.is_paused, queue)

    async def drain(self, queue: str, delayed: bool) -> int:
        woken: set[str] = set()
        removed = await self._db.write(admin.drain, queue, delayed, woken)
        self._wake_all(woken)
        return removed

    async def clean(self, queue: str, state: JobState, grace: float, limit: int) -> list[str]:
        woken: set[str] = set()
        removed = await self._db.write(admin.clean, queue, state, grace, limit, woken)
        self._wake_all(woken)
        return removed

    async def remove(self, queue: str, job_id: str) -> bool:
        woken: set[str] = set()
        removed = await self._db.write(admin.remove, queue, job_id, woken)
        self._wake_all(woken)
        return removed

    async def retry(self, queue: str, job_id: str) -> bool:
        done = await self._db.write(admin.retry, queue, job_id)
        if done:
            self._wake(queue)
        return done

    async def promote(self, queue: str, job_id: str) -> bool:
        done = await self._db.write(admin.promote, queue, job_id)
        if done:
            self._wake(queue)
        return done

    async def obliterate(self, queue: str) -> None:
        woken = {queue}
        await self._db.write(admin.obliterate, queue, woken)
        self._wake_all(woken)

    # -- flows and deduplication windows ---------------------------------------------------
    async def add_flow(self, nodes: Sequence[FlowNode]) -> list[AddResult]:
        woken: set[str] = set()
        results = await self._db.write(flows.add_flow, nodes, woken)
        self._wake_all(woken)
        return results

    async def get_dependencies(self, queue: str, job_id: str) -> Dependencies:
        return await self._db.read(flows.get_dependencies, queue, job_id)

    async def get_parents(self, queue: str, job_id: str) -> list[JobRef]:
        return await self._db.read(flows.get_parents, queue, job_id)

    async def get_deduplication(self, queue: str, dedup_id: str) -> str | None:
        return await self._db.read(flows.get_deduplication, queue, dedup_id)

    async def remove_deduplication(self, queue: str, dedup_id: str) -> bool:
        return await self._db.write(flows.remove_deduplication, queue, dedup_id)

    # -- rate limits -----------------------------------------------------------------------
    async def cancel(
        self, queue: str, job_id: str, reason: str, now: float
    ) -> CancelOutcome | None:
        woken: set[str] = set()
        outcome = await self._db.write(jobs.cancel, queue, job_id, reason, now, woken)
        self._wake_all(woken)
        return cast("CancelOutcome | None", outcome)

    async def cancel_requests(self, queue: str, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        found: dict[str, str] = await self._db.read(jobs.cancel_requests, queue, job_ids)
        return found

    async def set_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        await self._db.write(admin.set_rate_limit, queue, limit)
        self._wake(queue)

    async def set_global_concurrency(self, queue: str, limit: int | None) -> None:
        await self._db.write(admin.set_global_concurrency, queue, limit)
        self._wake(queue)

    async def set_group_concurrency(self, queue: str, limit: int | None) -> None:
        await self._db.write(admin.set_group_concurrency, queue, limit)
        self._wake(queue)

    async def get_group_concurrency(self, queue: str) -> int | None:
        limit: int | None = await self._db.read(admin.get_group_concurrency, queue)
        return limit

    async def set_group_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        await self._db.write(admin.set_group_rate_limit, queue, limit)
        self._wake(queue)

    async def get_group_rate_limit(self, queue: str) -> RateLimit | None:
        return await self._db.read(admin.get_group_rate_limit, queue)

    async def hold_group(self, queue: str, group: str, until: float) -> None:
        await self._db.write(admin.hold_group, queue, group, until)

    async def get_global_concurrency(self, queue: str) -> int | None:
        limit: int | None = await self._db.read(admin.get_global_concurrency, queue)
        return limit

    async def get_rate_limit(self, queue: str) -> RateLimit | None:
        return await self._db.read(admin.get_rate_limit, queue)

    async def hold(self, queue: str, until: float) -> None:
        await self._db.write(admin.hold, queue, until)

    # -- control ---------------------------------------------------------------------------
    async def send_control(self, command: str, payload_json: str) -> ControlMessage:
        return await self._db.write(control.send, command, payload_json)

    async def control_messages(self, since: float) -> list[ControlMessage]:
        return await self._db.read(control.since, since)

    # -- schedules -------------------------------------------------------------------------
    async def save_schedule(self, queue: str, schedule: ScheduleRecord) -> ScheduleRecord:
        return await self._db.write(admin.save_schedule, queue, schedule)

    async def get_schedules(self, queue: str) -> list[ScheduleRecord]:
        return await self._db.read(admin.get_schedules, queue)

    async def remove_schedule(self, queue: str, key: str) -> bool:
        return await self._db.write(admin.remove_schedule, queue, key)

    async def advance_schedule(
        self, queue: str, key: str, expected_next: float, next_run: float, jobs_: Sequence[NewJob]
    ) -> bool:
        done = await self._db.write(
            admin.advance_schedule, queue, key, expected_next, next_run, jobs_
        )
        if done and jobs_:
            self._wake(queue)
        return done

    # -- worker registry -------------------------------------------------------------------
    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        await self._db.write(admin.heartbeat, info, ttl)

    async def unregister(self, queue: str, worker_id: str) -> None:
        await self._db.write(admin.unregister, queue, worker_id)

    async def list_workers(self, queue: str) -> list[WorkerInfo]:
        return await self._db.read(admin.list_workers, queue)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _has_expired(conn: sqlite3.Connection, queue: str, now: float) -> bool:
    row = conn.execute(
        "SELECT 1 FROM jobs WHERE queue = ? AND state = 'active' AND lease_until <= ? LIMIT 1",
        (queue, now),
    ).fetchone()
    return row is not None
