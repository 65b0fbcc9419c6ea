"""``PostgresBackend``: the Backend contract on PostgreSQL (``postgresql://``, ``postgres://``).

The hot transitions are one call each of a PL/pgSQL function defined by the schema (one round
trip, one transaction): ``pj_add``, ``pj_take`` (fetch), ``pj_finish`` (finish and fetch the
next jobs), ``pj_log`` and ``pj_control``. Taking jobs uses ``FOR UPDATE SKIP LOCKED``, so
workers never wait on each other's rows. The rest are single statements or short
transactions, in :mod:`~polyjobs.backends.postgres.admin`.

A fetch with nothing to do waits for a ``NOTIFY`` (:mod:`~polyjobs.backends.postgres.waker`)
or for the next delayed job or rate-limit slot, never polling while the listener is up except
for the bounded fallback look.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import asyncpg

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
from polyjobs.backends.postgres import admin, records, schema
from polyjobs.backends.postgres.url import PostgresUrl
from polyjobs.backends.postgres.waker import Waker
from polyjobs.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    InvalidArgumentError,
)
from polyjobs.eventloop import wait_set
from polyjobs.options import RateLimit
from polyjobs.redact import redact_text

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0
#: An idle session unused for this long (seconds) is closed when a later call ends.
IDLE_LIFETIME = 300.0
CONTROL_KEEP = 100
#: A transaction PostgreSQL aborted to break a deadlock did nothing; it is run again.
DEADLOCK_RETRIES = 3
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact_text(text)


class PostgresBackend:
    """Jobs in PostgreSQL: shared by any number of processes and machines, durable as the
    database is. All of a deployment's tables live in one schema (``?schema=``)."""

    capabilities: frozenset[str] = frozenset(
        {
            CAP_SHARED,
            CAP_DURABLE,
            CAP_RATE_LIMIT,
            CAP_CONTROL,
            CAP_CANCEL,
            CAP_GLOBAL_CONCURRENCY,
            CAP_FLOWS,
            CAP_FLOWS_ACROSS_QUEUES,
            CAP_DEDUP,
            CAP_METRICS,
            CAP_GROUPS,
        }
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self._url = PostgresUrl.parse(url)
        self.schema = self._url.schema
        #: at most ``?pool=`` sessions in calls at once; None while the backend is closed
        self._slots: asyncio.Semaphore | None = None
        #: idle sessions with the time each was given back, the most recently used last
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._waker: Waker | None = None
        self._channel = self._url.channel
        #: False: ``open()`` neither creates nor migrates the schema (``StorageCreatingBackend``)
        self.create_storage = True

    def __repr__(self) -> str:
        return f"<PostgresBackend {self._url.redacted} schema={self.schema}>"

    # -- connections -----------------------------------------------------------------------
    def _connect_options(self) -> dict[str, Any]:
        return {
            "timeout": CONNECT_TIMEOUT,
            "command_timeout": COMMAND_TIMEOUT,
            "server_settings": {
                "search_path": schema.quote_ident(self.schema),
                # names this deployment's sessions in pg_stat_activity
                "application_name": f"polyjobs:{self.schema}"[:63],
            },
        }

    async def connect(self) -> asyncpg.Connection:
        """One connection outside the pool, with the schema as its search path."""
        conn: asyncpg.Connection = await asyncpg.connect(self._url.dsn, **self._connect_options())
        return conn

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except DRIVER_ERRORS as exc:
            raise BackendError(self._failed(exc)) from exc

    def _failed(self, exc: BaseException) -> str:
        return f"postgresql {self._url.redacted}: {one_line(exc)}"

    def _take_idle(self) -> asyncpg.Connection | None:
        """The most recently used idle session that is still alive, or None. A session whose
        server already ended it (its goodbye waits unread on the socket) is dropped here
        rather than sent a call bound to fail."""
        idle = self._idle
        while idle:
            conn = idle.pop()[0]
            if not conn.is_closed() and not _hung_up(conn):
                return conn
            conn.terminate()
        return None

    def _give_back(self, conn: asyncpg.Connection, slots: asyncio.Semaphore) -> None:
        """Keep a session whose call ended cleanly for the next call; one of a closed (or
        reopened) backend, or one left inside a transaction, is dropped. The least recently
        used idle session is closed once it has waited ``IDLE_LIFETIME``: the sessions opened
        for a burst of calls do not stay open for ever."""
        if self._slots is not slots or conn.is_closed() or conn.is_in_transaction():
            conn.terminate()
            return
        idle = self._idle
        now = time.monotonic()
        idle.append((conn, now))
        if now - idle[0][1] > IDLE_LIFETIME:
            task = asyncio.get_running_loop().create_task(_close_quietly(idle.pop(0)[0]))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _call(self, fn: Any, *args: Any) -> Any:
        """``fn(conn, *args)`` on one of the backend's sessions (at most ``?pool=`` at once;
        the idle ones are kept last-in first-out); run again when PostgreSQL aborted it to
        break a deadlock (then nothing of it was applied), or when the session turned out to
        be dead before any statement ran on it: the driver refused before writing, or the
        session ended while the driver was still preparing a statement (Parse/Describe
        execute nothing). Running again cannot apply twice. A session lost while a statement
        executed is not run again: it may have committed.

        A call that fails other than with an error PostgreSQL reported on a live session
        (killed, server gone, timed out, cancelled) terminates its session: it may be
        half-way through a reply, so it is never reused. Nothing here awaits between the end
        of the call and the session's return, so a cancellation cannot strand one."""
        slots = self._slots
        if slots is None:
            raise BackendError(f"postgresql backend {self._url.redacted} is not open")
        attempt = 0
        while True:
            await slots.acquire()
            try:
                conn = self._take_idle()
                if conn is None:
                    conn = await self.connect()
                try:
                    result = await fn(conn, *args)
                except BaseException as exc:
                    if isinstance(exc, asyncpg.PostgresError) and not _session_lost(exc):
                        self._give_back(conn, slots)
                    else:
                        with contextlib.suppress(asyncpg.InterfaceError):
                            conn.terminate()  # (fails when the driver already let it go)
                    raise
                self._give_back(conn, slots)
                return result
            except DRIVER_ERRORS as exc:
                if attempt == DEADLOCK_RETRIES or not (
                    isinstance(exc, asyncpg.DeadlockDetectedError)
                    or _unsent(exc)
                    or _lost_while_preparing(exc)
                ):
                    raise BackendError(self._failed(exc)) from exc
                attempt += 1
            finally:
                slots.release()

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        if self._slots is not None:
            return
        try:
            conn = await self.connect()
        except DRIVER_ERRORS as exc:
            raise self._unavailable(exc) from None
        try:
            with self._translate():
                await self._prepare_schema(conn)
        except BaseException:
            conn.terminate()
            raise
        self._idle = [(conn, time.monotonic())]
        self._slots = asyncio.Semaphore(self._url.pool)
        self._waker = Waker(self.connect, self._channel, self._url.redacted)

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"cannot reach PostgreSQL at {self._url.redacted}: {one_line(exc)}"
        )

    async def _prepare_schema(self, conn: Any) -> None:
        """Check the schema's version; migrate it unless the URL says ``migrate=false``."""
        version = await schema.current_version(conn, self.schema)
        if version == schema.SCHEMA_VERSION:
            return
        schema.check_version(version or 0, self.schema, self._url.redacted)
        if not version and not self.create_storage:
            raise ConfigError(
                f"no polyjobs schema {self.schema!r} in {self._url.redacted}; nothing was "
                "created. Check the URL's database and ?schema=, or create it with `polyjobs "
                "start`, `polyjobs enqueue` or `polyjobs migrate` on that backend"
            )
        if not self.create_storage:
            raise ConfigError(
                f"schema {self.schema!r} of {self._url.redacted} is at version {version}, this "
                f"polyjobs needs {schema.SCHEMA_VERSION}; nothing was changed. Run `polyjobs "
                "migrate` (or `polyjobs start`) on that backend first"
            )
        if not self._url.migrate:
            raise BackendUnavailableError(
                f"schema {self.schema!r} of {self._url.redacted} is at version {version or 0}, "
                f"this polyjobs needs {schema.SCHEMA_VERSION}; run `polyjobs migrate`"
            )
        await schema.migrate(conn, self.schema, self._url.redacted)

    async def migrate(self) -> tuple[int, int]:
        """Bring the schema to this polyjobs' version (``polyjobs migrate``); return the
        versions before and after. Needs no :meth:`open`."""
        try:
            conn = await asyncpg.connect(self._url.dsn, timeout=CONNECT_TIMEOUT)
        except DRIVER_ERRORS as exc:
            raise self._unavailable(exc) from None
        try:
            with self._translate():
                return await schema.migrate(conn, self.schema, self._url.redacted)
        finally:
            await _close_quietly(conn)

    async def close(self) -> None:
        """Close the waker and the idle sessions; a session still in a call is dropped when
        that call ends."""
        waker, self._waker = self._waker, None
        self._slots = None
        idle, self._idle = self._idle, []
        if waker is not None:
            await waker.close()
        closing = [_close_quietly(conn) for conn, _ in idle]
        if closing or self._closing:
            await asyncio.gather(*closing, *self._closing)

    # -- producers -------------------------------------------------------------------------
    async def add(self, queue: str, jobs: Sequence[NewJob]) -> list[AddResult]:
        if not jobs:
            return []
        results: list[AddResult] = await self._call(
            admin.add_jobs, queue, time.time(), self._channel, jobs
        )
        return results

    # -- workers ---------------------------------------------------------------------------
    async def _take(
        self, queue: str, token: str, limit: int, lease: float, want_next: bool
    ) -> tuple[list[JobRecord], float | None]:
        now = time.time()
        rows = await self._call(admin.take, queue, token, limit, now, now + lease, want_next)
        if rows and rows[-1]["state"] == "next":
            return [], rows[-1]["run_at"]
        return [records.job(r) for r in rows], None

    async def fetch(
        self, queue: str, token: str, limit: int, lease: float, block: float
    ) -> list[JobRecord]:
        if block <= 0:
            return (await self._take(queue, token, limit, lease, False))[0]
        waker = self._waker
        if waker is None:
            raise BackendError(f"postgresql backend {self._url.redacted} is not open")
        with self._translate():
            await waker.start()
        deadline = time.monotonic() + block
        while self._waker is waker:
            event = waker.register(queue)  # before the look: no wake-up falls in between
            try:
                jobs, due = await self._take(queue, token, limit, lease, True)
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0:
                    return jobs
                timeout = min(remaining, waker.poll)
                if due is not None:
                    timeout = min(timeout, max(due - time.time(), 0.0))
                await wait_set(event, timeout)
            finally:
                waker.unregister(queue, event)
        return []

    async def extend(
        self, queue: str, token: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        if not job_ids:
            return []
        kept = await self._call(admin.extend, queue, token, list(job_ids), time.time() + lease)
        return [job_id for job_id in job_ids if job_id not in kept]

    async def finish(
        self, queue: str, token: str, finishes: Sequence[Finish], fetch: int, lease: float
    ) -> FinishResult:
        now = time.time()
        rows = await self._call(
            admin.finish, queue, token, now, now + lease, max(fetch, 0), self._channel, finishes
        )
        lost = [r["id"] for r in rows if r["state"] == "lost"]
        return FinishResult(lost, [records.job(r) for r in rows if r["state"] != "lost"])

    async def release(self, queue: str, token: str, job_ids: Sequence[str] | None) -> list[str]:
        if job_ids is not None and not job_ids:
            return []
        ids = None if job_ids is None else list(dict.fromkeys(job_ids))
        released: list[str] = await self._call(admin.release, queue, token, ids, self._channel)
        return released

    async def recover_stalled(self, queue: str, max_stalls: int) -> list[Stalled]:
        stalled: list[Stalled] = await self._call(
            admin.recover_stalled, queue, max_stalls, time.time(), self._channel
        )
        return stalled

    async def update_progress(self, queue: str, job_id: str, progress_json: str) -> bool:
        done: bool = await self._call(admin.update_progress, queue, job_id, progress_json)
        return done

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        kept: int = await self._call(admin.add_log, queue, job_id, line, keep)
        return kept

    # -- inspection ------------------------------------------------------------------------
    async def get_job(self, queue: str, job_id: str) -> JobRecord | None:
        found: JobRecord | None = await self._call(admin.get_job, queue, job_id)
        return found

    async def get_logs(self, queue: str, job_id: str, start: int, end: int) -> list[str]:
        lines: list[str] = await self._call(admin.get_logs, queue, job_id, start, end)
        return lines

    async def list_jobs(self, queue: str, state: JobState, start: int, end: int) -> list[JobRecord]:
        found: list[JobRecord] = await self._call(admin.list_jobs, queue, state, start, end)
        return found

    async def get_metrics(self, queue: str, since: float) -> list[MinuteMetrics]:
        found: list[MinuteMetrics] = await self._call(admin.get_metrics, queue, since)
        return found

    async def counts(self, queue: str) -> dict[str, int]:
        found: dict[str, int] = await self._call(admin.counts, queue)
        return found

    async def queues(self) -> list[str]:
        names: list[str] = await self._call(admin.queues)
        return names

    # -- administration --------------------------------------------------------------------
    async def pause(self, queue: str) -> None:
        await self._call(admin.set_paused, queue, True, self._channel)

    async def resume(self, queue: str) -> None:
        await self._call(admin.set_paused, queue, False, self._channel)

    async def is_paused(self, queue: str) -> bool:
        paused: bool = await self._call(admin.is_paused, queue)
        return paused

    async def drain(self, queue: str, delayed: bool) -> int:
        removed: int = await self._call(admin.drain, queue, delayed)
        return removed

    async def clean(self, queue: str, state: JobState, grace: float, limit: int) -> list[str]:
        if state == "active":
            return []
        removed: list[str] = await self._call(admin.clean, queue, state, time.time() - grace, limit)
        return removed

    async def remove(self, queue: str, job_id: str) -> bool:
        done: bool = await self._call(admin.remove, queue, job_id)
        return done

    async def retry(self, queue: str, job_id: str) -> bool:
        done: bool = await self._call(admin.retry, queue, job_id, self._channel)
        return done

    async def cancel(
        self, queue: str, job_id: str, reason: str, now: float
    ) -> CancelOutcome | None:
        outcome = await self._call(admin.cancel, queue, job_id, reason, now, self._channel)
        return cast("CancelOutcome | None", outcome)

    async def set_global_concurrency(self, queue: str, limit: int | None) -> None:
        await self._call(admin.set_global_concurrency, queue, limit, self._channel)

    async def get_global_concurrency(self, queue: str) -> int | None:
        limit: int | None = await self._call(admin.get_global_concurrency, queue)
        return limit

    async def cancel_requests(self, queue: str, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        found: dict[str, str] = await self._call(admin.cancel_requests, queue, list(job_ids))
        return found

    async def promote(self, queue: str, job_id: str) -> bool:
        done: bool = await self._call(admin.promote, queue, job_id, time.time(), self._channel)
        return done

    async def obliterate(self, queue: str) -> None:
        await self._call(admin.obliterate, queue)

    # -- rate limits -----------------------------------------------------------------------
    async def set_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        await self._call(admin.set_rate_limit, queue, limit, self._channel)

    async def get_rate_limit(self, queue: str) -> RateLimit | None:
        found: RateLimit | None = await self._call(admin.get_rate_limit, queue)
        return found

    async def hold(self, queue: str, until: float) -> None:
        await self._call(admin.hold, queue, until)

    # -- groups ----------------------------------------------------------------------------
    async def set_group_concurrency(self, queue: str, limit: int | None) -> None:
        await self._call(admin.set_group_concurrency, queue, limit, self._channel)

    async def get_group_concurrency(self, queue: str) -> int | None:
        limit: int | None = await self._call(admin.get_group_concurrency, queue)
        return limit

    async def set_group_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        await self._call(admin.set_group_rate_limit, queue, limit, self._channel)

    async def get_group_rate_limit(self, queue: str) -> RateLimit | None:
        found: RateLimit | None = await self._call(admin.get_group_rate_limit, queue)
        return found

    async def hold_group(self, queue: str, group: str, until: float) -> None:
        await self._call(admin.hold_group, queue, group, until)

    # -- control ---------------------------------------------------------------------------
    async def send_control(self, command: str, payload_json: str) -> ControlMessage:
        at: float = await self._call(
            admin.send_control, time.time(), command, payload_json, CONTROL_KEEP
        )
        return ControlMessage(at, command, payload_json)

    async def control_messages(self, since: float) -> list[ControlMessage]:
        found: list[ControlMessage] = await self._call(admin.control_since, since)
        return found

    # -- flows and deduplication windows ---------------------------------------------------
    async def add_flow(self, nodes: Sequence[FlowNode]) -> list[AddResult]:
        if not nodes:
            return []
        try:
            results: list[AddResult] = await self._call(admin.add_flow, nodes, time.time())
        except BackendError as exc:
            cause = exc.__cause__
            if isinstance(cause, asyncpg.PostgresError) and cause.sqlstate == admin.FLOW_ERROR:
                raise InvalidArgumentError(one_line(cause)) from None
            raise
        return results

    async def get_dependencies(self, queue: str, job_id: str) -> Dependencies:
        found: Dependencies = await self._call(admin.get_dependencies, queue, job_id)
        return found

    async def get_parents(self, queue: str, job_id: str) -> list[JobRef]:
        found: list[JobRef] = await self._call(admin.get_parents, queue, job_id)
        return found

    async def get_deduplication(self, queue: str, dedup_id: str) -> str | None:
        found: str | None = await self._call(admin.get_deduplication, queue, dedup_id, time.time())
        return found

    async def remove_deduplication(self, queue: str, dedup_id: str) -> bool:
        done: bool = await self._call(admin.remove_deduplication, queue, dedup_id, time.time())
        return done

    # -- schedules -------------------------------------------------------------------------
    async def save_schedule(self, queue: str, schedule_: ScheduleRecord) -> ScheduleRecord:
        stored: ScheduleRecord = await self._call(admin.save_schedule, queue, schedule_)
        return stored

    async def get_schedules(self, queue: str) -> list[ScheduleRecord]:
        found: list[ScheduleRecord] = await self._call(admin.get_schedules, queue)
        return found

    async def remove_schedule(self, queue: str, key: str) -> bool:
        done: bool = await self._call(admin.remove_schedule, queue, key)
        return done

    async def advance_schedule(
        self, queue: str, key: str, expected_next: float, next_run: float, jobs: Sequence[NewJob]
    ) -> bool:
        done: bool = await self._call(
            admin.advance_schedule,
            queue,
            key,
            expected_next,
            next_run,
            jobs,
            time.time(),
            self._channel,
        )
        return done

    # -- worker registry -------------------------------------------------------------------
    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        await self._call(admin.heartbeat, info, time.time(), ttl)

    async def unregister(self, queue: str, worker_id: str) -> None:
        await self._call(admin.unregister, queue, worker_id)

    async def list_workers(self, queue: str) -> list[WorkerInfo]:
        found: list[WorkerInfo] = await self._call(admin.list_workers, queue, time.time())
        return found


#: What asyncpg says, before it writes anything, on a connection it cannot use: one whose
#: session the server ended while it sat idle in the pool, or whose protocol is still busy
#: with a call that was cut off (the connection is then dropped, see ``_call``).
UNSENT = ("another operation", "connection is closed")


def _unsent(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the driver refusing a call before sending it (safe to run again)."""
    refused = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)
    return isinstance(exc, refused) and any(text in str(exc) for text in UNSENT)


def _lost_while_preparing(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the session ending while the driver prepared a statement (sent
    Parse/Describe, waited for the description): no statement of the call had run yet."""
    if not isinstance(exc, asyncpg.ConnectionDoesNotExistError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_get_statement":
            return True
        tb = tb.tb_next
    return False


def _hung_up(conn: Any) -> bool:
    """Whether an idle connection has bytes (or end of file) waiting unread: the server
    spoke first, which on an idle session means it is ending it."""
    transport = getattr(conn, "_transport", None)  # asyncpg keeps the transport there
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    fd = sock.fileno()
    if fd < 0:
        return True  # the socket is already gone
    poller = select.poll()  # (select.select cannot watch a descriptor past 1023)
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _session_lost(exc: asyncpg.PostgresError) -> bool:
    """The server ended the session (administrator command, shutdown, crash): SQLSTATE class
    57 (operator intervention) or 08 (connection exception)."""
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith(("57", "08"))


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT)
    except (Exception, TimeoutError):
        conn.terminate()
