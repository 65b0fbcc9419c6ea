"""One SQLite file, one connection, one dedicated thread.

The SQLite calls of a backend object run on its own single thread, so the event loop never
blocks on the file and the transactions of one object are serial. A state transition is one
``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so WAL readers never have
to be upgraded and fail with ``SQLITE_BUSY_SNAPSHOT``); a busy file is waited for by SQLite's
busy handler and, past it, retried until :data:`LOCK_PATIENCE` runs out.

A call known to be short (:meth:`Database.write_short`, :meth:`Database.read_short`: an add,
a worker's finish or take of a few jobs, a fetch's look for work) skips the hand-over to the
thread when it can start at once: while nothing of this object is queued or running on the
thread, it runs on the calling (event loop) thread with a busy timeout of zero, and a file
another connection holds locked sends it to the thread, where it waits as any other call.
Nothing slow is left on the loop: a call there past :data:`SHORT_BUDGET` is interrupted, rolled
back and run on the thread; SQLite's automatic WAL checkpoint (an ``fsync``) is off while the
connection serves the loop, and every :data:`SHORT_ROUND` short writes one goes to the thread,
whose commit checkpoints when due; with ``synchronous=full`` or ``extra`` every commit syncs,
so every call takes the thread.

Opening checks the file before anything is written: a file that is not SQLite, is truncated,
belongs to another application or comes from a newer schema raises
:class:`~polyjobs.errors.BackendUnavailableError` with one line, and the file is left as it was.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path
from queue import SimpleQueue
from typing import Concatenate, ParamSpec, TypeVar, cast
from urllib.parse import quote

from polyjobs.backends.sqlite.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    OWN_TABLES,
    SCHEMA_VERSION,
)
from polyjobs.errors import BackendError, BackendUnavailableError

P = ParamSpec("P")
T = TypeVar("T")
Op = Callable[Concatenate[sqlite3.Connection, P], T]
#: A call for the database thread and the future its caller waits on; None stops the thread.
_Item = tuple[Callable[[], object], "asyncio.Future[object]"] | None

BUSY_TIMEOUT_MS = 5000
LOCK_PATIENCE = 30.0
#: Files up to this size get ``PRAGMA quick_check`` when opened (about 1 s per 100 MiB); a
#: bigger file is checked as it is read, and damage found then is a ``BackendError`` too.
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
#: A checkpointed WAL is cut back to this size, so a burst does not leave a huge -wal behind.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
#: SQLite's own default: the commit that finds the WAL past this many pages checkpoints it.
WAL_AUTOCHECKPOINT = 1000
#: Short writes run on the loop in a row before one goes to the thread, where the WAL is
#: checkpointed if it is due (a single add writes a handful of pages).
SHORT_ROUND = 100
#: The longest a short call may hold the event loop before it is interrupted and sent to the
#: thread; SQLite checks it every :data:`PROGRESS_STEPS` virtual machine instructions.
SHORT_BUDGET = 0.005
PROGRESS_STEPS = 1000
#: A call carrying at most this many jobs (an add, a worker's finish and fetch) is a short write.
SHORT_JOBS = 16
HEADER = b"SQLite format 3\x00"
MOVE_ASIDE = "move it aside (or restore a backup) and start again, or use another file"


class Database:
    """The connection to ``path`` and the thread that owns it."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._inbox: SimpleQueue[_Item] | None = None
        #: Held by whichever thread is using the connection (the database thread, or the
        #: event loop's for a short write); the loop only ever tries it without waiting.
        self._lock = threading.Lock()
        #: Calls handed to the thread (counted by the callers' thread) and calls the thread
        #: has finished or dropped (counted by the thread): equal when nothing is in flight.
        self._sent = 0
        self._done = 0
        #: Whether the connection is set up for short writes on the loop (no busy wait, no
        #: automatic checkpoint) rather than for the thread; switched under ``_lock``.
        self._on_loop = False
        self._short_commits = 0
        self._deadline = 0.0
        self._short_allowed = synchronous in ("OFF", "NORMAL")

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        inbox: SimpleQueue[_Item] = SimpleQueue()
        self._inbox = inbox
        # the thread holds the object weakly between calls, so one dropped without close()
        # (its connection closed by the collector) lets its thread end too
        threading.Thread(
            target=_serve,
            args=(inbox, weakref.ref(self)),
            name=f"polyjobs-sqlite:{self.path}",
            daemon=True,
        ).start()
        weakref.finalize(self, inbox.put, None)
        try:
            await self._call(self._open_sync)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        inbox = self._inbox
        if inbox is None:
            return
        try:
            await self._call(self._close_sync)
        finally:
            self._inbox = None
            inbox.put(None)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- calls -----------------------------------------------------------------------------
    async def read(self, fn: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` on the database thread, outside any transaction."""
        return await self._call(self._guarded, _bind(fn, *args, **kwargs), False)

    async def write(self, fn: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` as one ``BEGIN IMMEDIATE`` transaction on the database thread.

        ``fn`` may run more than once (a busy file is retried), so it must only read and
        write the database.
        """
        return await self._call(self._guarded, _bind(fn, *args, **kwargs), True)

    async def read_short(self, fn: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`read` for a read known to be short (a fetch's look for work): run on the
        event loop's thread under the same conditions as :meth:`write_short`."""
        return await self._short(_bind(fn, *args, **kwargs), False)

    async def write_short(self, fn: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`write` for a transaction known to be short (an add, a finish of a few jobs).

        When nothing of this object is in flight on the database thread and the file's write
        lock is free, it runs right here, on the event loop's thread, without the hand-over;
        otherwise (or every :data:`SHORT_ROUND` of them, so that the WAL is checkpointed) it
        runs as :meth:`write` does. A run here that takes longer than :data:`SHORT_BUDGET`
        (a fetch that finds thousands of delayed jobs due, say) is interrupted, rolled back and
        run on the thread. ``fn`` may run more than once.
        """
        return await self._short(_bind(fn, *args, **kwargs), True)

    async def _short(self, call: Callable[[sqlite3.Connection], T], transaction: bool) -> T:
        await asyncio.sleep(0)  # as after a hand-over: the loop's other tasks get their turn
        if self._inbox is not None and self._done >= self._sent and self._short_allowed:
            if self._lock.acquire(blocking=False):
                try:
                    done, result = self._here(call, transaction)
                finally:
                    self._lock.release()
                if done:
                    return cast("T", result)
        return await self._call(self._guarded, call, transaction)

    def _here(
        self, fn: Callable[[sqlite3.Connection], T], transaction: bool
    ) -> tuple[bool, T | None]:
        """``(True, result)`` once ``fn`` has run (and committed); ``(False, None)`` if another
        connection holds the lock, the budget ran out or a checkpoint is due: nothing done."""
        conn = self._conn
        if conn is None or (transaction and self._short_commits >= SHORT_ROUND):
            return False, None
        try:
            if not self._on_loop:
                conn.execute("PRAGMA busy_timeout = 0")
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                conn.set_progress_handler(self._over_budget, PROGRESS_STEPS)
                self._on_loop = True
            self._deadline = time.perf_counter() + SHORT_BUDGET
            if not transaction:
                return True, fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                # never interrupted: SQLite may call the progress handler after a COMMIT has
                # committed, and an 'interrupted' there would run fn again on the thread
                self._deadline = math.inf
                conn.execute("COMMIT")
            except BaseException:
                self._deadline = math.inf  # the rollback itself is never interrupted
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and (_is_busy(exc) or _is_interrupt(exc)):
                return False, None
            raise self._error(exc) from exc
        self._short_commits += 1
        return True, result

    def _over_budget(self) -> bool:
        """SQLite's progress handler while the connection serves the loop: True interrupts."""
        return time.perf_counter() > self._deadline

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        inbox = self._inbox
        if inbox is None:
            raise BackendError(f"SQLite backend for {self.path} is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._sent += 1
        inbox.put((partial(fn, *args, **kwargs), cast("asyncio.Future[object]", future)))
        return await future

    def _run(self, call: Callable[[], object]) -> tuple[object, BaseException | None]:
        """One call on the database thread: ``(result, None)`` or ``(None, error)``."""
        try:
            with self._lock:
                self._for_thread()
                return call(), None
        except BaseException as exc:  # handed to the caller, as an executor would
            return None, exc
        finally:
            self._done += 1

    def _for_thread(self) -> None:
        """Give the connection back its busy wait and automatic checkpoints (SQLite runs one
        at the commit that finds the WAL past :data:`WAL_AUTOCHECKPOINT` pages)."""
        conn = self._conn
        if conn is not None and self._on_loop:
            conn.set_progress_handler(None, 0)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
            self._on_loop = False

    def _guarded(self, fn: Callable[[sqlite3.Connection], T], transaction: bool) -> T:
        conn = self._conn
        if conn is None:
            raise BackendError(f"SQLite backend for {self.path} is closed")
        try:
            if not transaction:
                return fn(conn)
            result = _transaction(conn, fn)
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc
        self._short_commits = 0  # this commit checkpointed the WAL if it was due
        return result

    def _error(self, exc: sqlite3.DatabaseError) -> BackendError:
        detail = _one_line(exc)
        if _is_busy(exc):
            return BackendError(
                f"SQLite file {self.path} stayed locked by another connection for "
                f"{LOCK_PATIENCE:g}s; retry, or find the process holding it"
            )
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in detail:
            return BackendUnavailableError(
                f"cannot write SQLite file {self.path} ({detail}); "
                "make the file and its directory writable"
            )
        if isinstance(exc, sqlite3.OperationalError | sqlite3.IntegrityError):
            # a constraint refusing a write is no damage: the file must not be moved aside
            return BackendError(f"SQLite file {self.path}: {detail}")
        return BackendError(f"SQLite file {self.path} is damaged ({detail}); {MOVE_ASIDE}")

    # -- opening ---------------------------------------------------------------------------
    def _open_sync(self) -> None:
        path = self.path
        if path.exists():
            _check_existing(path)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendUnavailableError(
                    f"cannot create the directory of SQLite file {path} ({exc.strerror}); "
                    "create it or choose a writable location"
                ) from exc
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        try:
            conn = sqlite3.connect(
                path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,  # short writes run on the loop (under _lock)
            )
        except sqlite3.Error as exc:
            raise _unopenable(path, exc) from exc
        try:
            _prepare(conn, path, self.synchronous)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and not _is_busy(exc):
                raise _unopenable(path, exc) from exc
            raise self._error(exc) from exc
        except BaseException:
            conn.close()
            raise
        conn.row_factory = sqlite3.Row
        return conn


def _serve(inbox: SimpleQueue[_Item], database: weakref.ref[Database]) -> None:
    """The database thread: run the calls in the order they came, hand each outcome back to
    the loop that is waiting for it. Between calls it holds nothing of the database object."""
    while (item := inbox.get()) is not None:
        db = database()
        if db is None:
            return
        _serve_one(db, *item)
        del item, db


def _serve_one(db: Database, call: Callable[[], object], future: asyncio.Future[object]) -> None:
    if future.cancelled():  # its caller stopped waiting before it started
        db._done += 1
        return
    result, error = db._run(call)
    try:
        future.get_loop().call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # that loop is closed: nobody is waiting any more
        pass


def _settle(future: asyncio.Future[object], result: object, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _bind(fn: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> Callable[[sqlite3.Connection], T]:
    def call(conn: sqlite3.Connection) -> T:
        return fn(conn, *args, **kwargs)

    return call


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    deadline = time.monotonic() + LOCK_PATIENCE
    delay = 0.005
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _one_line(what: object) -> str:
    text = " ".join(str(what).split())
    return text or type(what).__name__


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _is_interrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool((code & 0xFF) == sqlite3.SQLITE_INTERRUPT)
    return "interrupted" in str(exc)


def _unopenable(path: Path, exc: sqlite3.Error) -> BackendUnavailableError:
    detail = _one_line(exc)
    return BackendUnavailableError(
        f"cannot open SQLite file {path} for writing ({detail}); "
        "make the file and its directory writable, or use another file"
    )


def _check_existing(path: Path) -> None:
    """Refuse a file that is not ours, damaged or too new, without writing to it.

    A refusal is confirmed by a second look: another process may have been creating the file
    at that very moment (its first page half written)."""
    try:
        _check_once(path)
    except BackendUnavailableError:
        time.sleep(0.05)
        _check_once(path)


def _check_once(path: Path) -> None:
    if not path.is_file():
        raise BackendUnavailableError(f"SQLite path {path} is not a file; use a file path")
    size = path.stat().st_size
    if size == 0:
        return  # an empty file is an empty database: nothing to lose
    with path.open("rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or not header.startswith(HEADER):
        raise BackendUnavailableError(
            f"SQLite file {path} is not a SQLite database, or is corrupt; {MOVE_ASIDE}"
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The size in the header is only trusted while no WAL exists: a checkpoint writes page 1
    # before it grows the file; otherwise SQLite itself (quick_check below) decides.
    at_rest = not Path(f"{path}-wal").exists()  # no process has it open, none crashed on it
    if at_rest and header[24:28] == header[92:96] and pages * page_size > size:
        raise BackendUnavailableError(
            f"SQLite file {path} is truncated ({size} of {pages * page_size} bytes); {MOVE_ASIDE}"
        )
    _check_contents(path, size, at_rest)


def _check_contents(path: Path, size: int, at_rest: bool) -> None:
    # A file at rest is read as immutable: no lock, no -shm/-wal created next to it. Side files
    # are never deleted here: they may belong to a process opening the file this very moment.
    immutable = "&immutable=1" if at_rest else ""
    uri = f"file:{quote(str(path.absolute()))}?mode=ro{immutable}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise _unopenable(path, exc) from exc
    try:
        _check_identity(conn, path)
        if size <= QUICK_CHECK_MAX_BYTES:
            problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise BackendUnavailableError(
                    f"SQLite file {path} is damaged ({_one_line(problem)}); {MOVE_ASIDE}"
                )
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            return  # someone is writing it right now: it is alive; the writable open decides
        raise _unopenable(path, exc) from exc
    except sqlite3.DatabaseError as exc:
        raise BackendUnavailableError(
            f"SQLite file {path} is damaged ({_one_line(exc)}); {MOVE_ASIDE}"
        ) from exc
    finally:
        conn.close()


def _check_identity(conn: sqlite3.Connection, path: Path) -> tuple[int, int]:
    """The file's ``(schema version, application id)``, once it is known to be a polyjobs file
    (or an empty one) this version can read; ``BackendUnavailableError`` otherwise."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    tables = {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not row[0].startswith("sqlite_")
    }
    if app_id not in (0, APPLICATION_ID) or (version == 0 and tables - OWN_TABLES):
        raise BackendUnavailableError(
            f"SQLite file {path} belongs to another application; use another file for polyjobs"
        )
    if version > SCHEMA_VERSION:
        raise BackendUnavailableError(
            f"SQLite file {path} was written by a newer polyjobs (schema {version}, this "
            f"version reads up to {SCHEMA_VERSION}); upgrade polyjobs or use another file"
        )
    return version, app_id


def _prepare(conn: sqlite3.Connection, path: Path, synchronous: str) -> None:
    """Busy timeout, WAL, synchronous, then the schema migrations (one transaction)."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = _transaction_free(conn, "PRAGMA journal_mode = WAL")
    if str(mode).lower() != "wal":
        raise BackendUnavailableError(f"SQLite file {path} cannot use WAL mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
    _transaction(conn, partial(_migrate, path=path))


def _transaction_free(conn: sqlite3.Connection, sql: str) -> object:
    deadline = time.monotonic() + LOCK_PATIENCE
    while True:
        try:
            return conn.execute(sql).fetchone()[0]
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version, app_id = _check_identity(conn, path)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")
    if app_id == 0:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    # SQLite opens a file it may not write read-only without a word; this write makes a
    # read-only file fail here, at open, rather than at the first job
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
