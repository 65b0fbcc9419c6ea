"""One SQLite file, one connection, one dedicated thread.

Every SQLite call of a backend object runs on its own single thread, so the event loop never
blocks on the file and the transactions of one object are serial. A state transition is one
``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so WAL readers never have
to be upgraded and fail with ``SQLITE_BUSY_SNAPSHOT``); a busy file is waited for by SQLite's
busy handler and, past it, retried until :data:`LOCK_PATIENCE` runs out.

Opening checks the file before anything is written: a file that is not SQLite, is truncated,
belongs to another application or comes from a newer schema raises
:class:`~polyjobs.errors.BackendUnavailableError` with one line, and the file is left as it was.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar
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

BUSY_TIMEOUT_MS = 5000
LOCK_PATIENCE = 30.0
#: Files up to this size get ``PRAGMA quick_check`` when opened (about 1 s per 100 MiB); a
#: bigger file is checked as it is read, and damage found then is a ``BackendError`` too.
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
#: A checkpointed WAL is cut back to this size, so a burst does not leave a huge -wal behind.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
HEADER = b"SQLite format 3\x00"
MOVE_ASIDE = "move it aside (or restore a backup) and start again, or use another file"


class Database:
    """The connection to ``path`` and the thread that owns it."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"polyjobs-sqlite:{self.path}")
        try:
            await self._call(self._open_sync)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            executor.shutdown(wait=False)

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

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is None:
            raise BackendError(f"SQLite backend for {self.path} is not open")
        call = partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _guarded(self, fn: Callable[[sqlite3.Connection], T], transaction: bool) -> T:
        conn = self._conn
        if conn is None:
            raise BackendError(f"SQLite backend for {self.path} is closed")
        try:
            return _transaction(conn, fn) if transaction else fn(conn)
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc

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
        if isinstance(exc, sqlite3.OperationalError):
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
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
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
