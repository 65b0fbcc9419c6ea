"""Test support for the PostgreSQL backend: a reachability check that fails (not skips) in CI,
throw-away schemas, and a PostgreSQL cluster that a test starts, stops and restarts itself."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from polyjobs.backends.postgres.url import PostgresUrl
from polyjobs.redact import redact_url

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def server_url() -> str:
    """``POLYJOBS_TEST_POSTGRES_URL``, or the local server's ``test`` database."""
    return os.environ.get("POLYJOBS_TEST_POSTGRES_URL", DEFAULT_URL)


def require_postgres(url: str) -> None:
    """Skip the calling test when PostgreSQL at ``url`` does not answer, or fail it when the
    ``CI`` environment variable is set (CI never skips the PostgreSQL tests)."""

    async def ping() -> None:
        conn = await asyncpg.connect(PostgresUrl.parse(url).dsn, timeout=2.0)
        await conn.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        message = f"PostgreSQL at {redact_url(url)} does not answer: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("schema", schema)])))


def drop_schema(url: str, schema: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(PostgresUrl.parse(url).dsn, timeout=5.0)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(drop())
        return
    # called from async code: run on a thread of its own (a test's loop waits the moment)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, drop()).result()


@contextmanager
def fresh_schema(url: str, prefix: str = "pjtest") -> Iterator[str]:
    """``url`` with a schema of its own (created on first use), dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield with_schema(url, schema)
    finally:
        drop_schema(url, schema)


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def pg_tool(name: str) -> str | None:
    """A PostgreSQL server program (``initdb``, ``pg_ctl``) from Debian's versioned directory
    or PATH."""
    for folder in BIN_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which(name)


class PostgresCluster:
    """A PostgreSQL cluster a test initialises in ``directory`` and starts, stops (``fast``,
    ``immediate``: a crash) and restarts on a spare port, with trust authentication.

    The server refuses to run as root, so when the test runs as root its files belong to, and
    its programs run as, the ``postgres`` user (``runuser``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = spare_port()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        command = list(argv)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise RuntimeError(f"{Path(argv[0]).name} failed: {' '.join(detail)}")

    def init(self) -> None:
        initdb = pg_tool("initdb")
        if initdb is None:
            raise RuntimeError("initdb not found (install PostgreSQL's server package)")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
            self.directory.chmod(0o700)
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self, timeout: float = 30.0) -> None:
        pg_ctl = pg_tool("pg_ctl")
        assert pg_ctl is not None
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
        options += "-c fsync=off -c full_page_writes=off"
        log = self.directory / "server.log"
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = pg_tool("pg_ctl")
        assert pg_ctl is not None
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")
