"""A pooled session the server ended is never the reason a call fails, and a call is run again
only when it cannot have applied.

The sessions are cut where it matters by a byte-forwarding proxy on loopback in front of the
real server (``sslmode=disable`` so the proxy can see which message goes by), or killed with
``pg_terminate_backend`` while the event loop is blocked, so the driver has not yet read the
server's goodbye when the next call takes the connection.
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import asyncpg
import pytest

from polyjobs import Queue, open_backend
from polyjobs.backends.postgres import backend as backend_module
from polyjobs.backends.postgres.backend import PostgresBackend
from polyjobs.backends.postgres.url import PostgresUrl
from polyjobs.errors import BackendError

KEEP = {"remove_on_complete": False}


class CuttingProxy:
    """Forwards a client's bytes to PostgreSQL and back. Armed with a marker, it ends the
    client's connection at the first client message holding it: ``before`` the server sees
    the message, or ``after`` the server has run it (its reply is dropped)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.marker: bytes | None = None
        self.when = "before"
        self.cuts = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def arm(self, marker: bytes, when: str) -> None:
        self.marker, self.when = marker, when

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        cut_reply = asyncio.Event()

        def end() -> None:
            client_w.close()
            server_w.close()

        async def upstream() -> None:
            while data := await client_r.read(65536):
                if self.marker is not None and self.marker in data:
                    self.marker = None
                    self.cuts += 1
                    if self.when == "before":
                        end()
                        return
                    cut_reply.set()
                server_w.write(data)
                await server_w.drain()
            end()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if cut_reply.is_set():
                    end()
                    return
                client_w.write(data)
                await client_w.drain()
            end()

        try:
            await asyncio.gather(upstream(), downstream())
        except (ConnectionError, OSError):
            end()


@pytest.fixture
async def proxied(pg_url: str) -> AsyncIterator[tuple[str, CuttingProxy]]:
    port = urlsplit(pg_url).port or 5432
    proxy = CuttingProxy(port)
    local = await proxy.start()
    url = pg_url.replace(f"127.0.0.1:{port}", f"127.0.0.1:{local}") + "&sslmode=disable"
    try:
        yield url, proxy
    finally:
        await proxy.close()


async def _waiting(pg_url: str, queue: str) -> int:
    async with open_backend(pg_url) as backend:
        return int((await Queue(queue, backend).counts())["waiting"])


async def test_a_session_lost_while_the_add_is_prepared_is_run_again_once(
    pg_url: str, proxied: tuple[str, CuttingProxy]
) -> None:
    url, proxy = proxied
    async with open_backend(url) as backend:
        queue = Queue("cut", backend, default_options=KEEP)
        # the add's statement text goes by once, in the Parse message that prepares it
        proxy.arm(b"pj_add_one(", "before")
        job = await queue.add("first", {"n": 1})
        assert proxy.cuts == 1
        assert (await queue.get_job(job.id)) is not None
    assert await _waiting(pg_url, "cut") == 1


async def test_a_session_lost_while_the_add_runs_is_not_run_again(
    pg_url: str, proxied: tuple[str, CuttingProxy]
) -> None:
    url, proxy = proxied
    async with open_backend(url) as backend:
        queue = Queue("cut", backend, default_options=KEEP)
        await queue.add("first", {"n": 1})  # prepares the statement on the pooled session
        # the second add sends only Bind/Execute with its values; the server runs and commits
        # it, the reply is lost: the caller is told, and the add is not applied a second time
        proxy.arm(b"second-add", "after")
        with pytest.raises(BackendError, match="postgresql"):
            await queue.add("second-add", {"n": 2})
        assert proxy.cuts == 1
    assert await _waiting(pg_url, "cut") == 2


async def test_an_idle_session_the_server_ended_is_replaced_before_the_next_call(
    pg_url: str,
) -> None:
    parsed = PostgresUrl.parse(pg_url)

    async def kill() -> int:
        conn = await asyncpg.connect(parsed.dsn)
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                f"polyjobs:{parsed.schema}"[:63],
            )
            return len(rows)
        finally:
            await conn.close()

    async with open_backend(pg_url) as backend:
        queue = Queue("idle", backend, default_options=KEEP)
        await queue.add("first", {"n": 1})  # the add is prepared on the pooled session
        killed: list[int] = []
        # killed from another thread while this loop is blocked, then a pause so the server has
        # surely hung up: the goodbye waits unread on the pooled connection's socket
        thread = threading.Thread(target=lambda: killed.append(asyncio.run(kill())))
        thread.start()
        thread.join()
        time.sleep(0.3)
        assert killed and killed[0] >= 1
        second = await queue.add("second", {"n": 2})
        assert (await queue.get_job(second.id)) is not None
    assert await _waiting(pg_url, "idle") == 2


async def test_a_healthy_session_is_kept_in_a_process_with_many_open_files(
    pg_url: str,
) -> None:
    """Its socket's descriptor past 1023 (the limit of ``select.select``) is no reason to
    drop a pooled session: every call of a run of adds uses the same server process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    parsed = PostgresUrl.parse(pg_url)
    try:
        async with open_backend(pg_url) as backend:
            queue = Queue("many-files", backend, default_options=KEEP)
            pids: set[int] = set()
            conn = await asyncpg.connect(parsed.dsn)
            try:
                for i in range(20):
                    await queue.add("job", {"n": i})
                    rows = await conn.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                        f"polyjobs:{parsed.schema}"[:63],
                    )
                    pids |= {row["pid"] for row in rows}
            finally:
                await conn.close()
        assert len(pids) == 1, f"{len(pids)} server sessions for 20 sequential adds"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _pid_after(conn: asyncpg.Connection, pause: float) -> int:
    pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
    await conn.execute(f"SELECT pg_sleep({pause})")
    return pid


async def test_a_cancelled_call_drops_its_session_and_the_next_call_gets_a_fresh_one(
    pg_url: str,
) -> None:
    """With one session allowed, a call cancelled while the server runs its statement gives
    its slot back at once, and its session (which may be half-way through a reply) is never
    handed to the next call."""
    sep = "&" if "?" in pg_url else "?"
    async with open_backend(f"{pg_url}{sep}pool=1") as backend:
        pg = cast(PostgresBackend, backend)
        first = int(await pg._call(_pid_after, 0.0))
        slow = asyncio.create_task(pg._call(_pid_after, 5.0))
        await asyncio.sleep(0.3)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        started = time.monotonic()
        after = int(await pg._call(_pid_after, 0.0))
        assert time.monotonic() - started < 3.0  # not after the cancelled 5 s call
        assert after != first
        queue = Queue("after-cancel", backend, default_options=KEEP)
        job = await queue.add("job", {"n": 1})
        assert (await queue.get_job(job.id)) is not None


async def test_concurrent_calls_use_at_most_the_pool_size_in_sessions(pg_url: str) -> None:
    sep = "&" if "?" in pg_url else "?"
    async with open_backend(f"{pg_url}{sep}pool=2") as backend:
        pg = cast(PostgresBackend, backend)
        pids = await asyncio.gather(*(pg._call(_pid_after, 0.05) for _ in range(10)))
        assert len(set(pids)) == 2, pids
        # sequential calls afterwards reuse the most recent idle session
        again = {await pg._call(_pid_after, 0.0) for _ in range(5)}
        assert len(again) == 1 and again <= set(pids)


async def test_sessions_opened_for_a_burst_are_closed_once_idle_past_their_lifetime(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend_module, "IDLE_LIFETIME", 0.3)
    parsed = PostgresUrl.parse(pg_url)
    sep = "&" if "?" in pg_url else "?"
    watcher = await asyncpg.connect(parsed.dsn)

    async def sessions() -> int:
        return int(
            await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                f"polyjobs:{parsed.schema}"[:63],
            )
        )

    async def settled(want: int) -> int:
        """The count once it is ``want`` (a closed session's server process exits soon after)."""
        for _ in range(40):
            if (found := await sessions()) == want:
                return found
            await asyncio.sleep(0.05)
        return found

    try:
        async with open_backend(f"{pg_url}{sep}pool=3") as backend:
            pg = cast(PostgresBackend, backend)
            await asyncio.gather(*(pg._call(_pid_after, 0.1) for _ in range(3)))
            assert await sessions() == 3
            await asyncio.sleep(0.5)
            # each call ends by closing the least recently used session past its lifetime
            for _ in range(3):
                await pg._call(_pid_after, 0.0)
                await asyncio.sleep(0.05)
            assert await settled(1) == 1
        assert await settled(0) == 0
    finally:
        await watcher.close()
