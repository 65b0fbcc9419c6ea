"""Redis connections: URL parsing, the clients, error translation, and the blocking wait.

Two clients per backend: one for ordinary commands (with socket timeouts), and one without
socket timeouts for the calls that bound their own time: scripts and blocking pops
(``BZPOPMIN`` on a queue's wake-up key). Where it can serve the URL, scripts go over one
:class:`~polyjobs.backends.redis.multiplex.Multiplexed` connection instead
(:func:`make_multiplexed`). A blocking call that is cancelled or fails drops its
connection instead of returning it to the pool, so a half-read reply can never reach the next
caller. With ``?cluster=true`` the clients are Redis Cluster clients and each call goes to the
node that owns the queue's hash slot. redis-py's own retries are off: a script that may have run
must not run twice; the worker's loops retry with backoff instead. An idle pooled connection the
server closed (client killed, server restarted) is reconnected before anything is sent on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    RedisError,
    ResponseError,
)
from redis.maint_notifications import MaintNotificationsConfig

from polyjobs.backends.redis import multiplex
from polyjobs.backends.redis.keys import DEFAULT_PREFIX
from polyjobs.backends.redis.multiplex import Multiplexed
from polyjobs.errors import BackendError, InvalidArgumentError
from polyjobs.redact import redact_text, redact_url

SCHEMES = ("redis", "rediss", "unix")
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0
#: Extra time a blocking pop may take beyond its own timeout before the client gives up on it.
BLOCK_MARGIN = 5.0


def _one_hash_tag(prefix: str) -> bool:
    """A prefix holds no brace, or one hash tag ``{name}`` (which then puts every queue in one
    Redis Cluster slot)."""
    if "{" not in prefix and "}" not in prefix:
        return True
    start, end = prefix.find("{"), prefix.find("}")
    rest = prefix[end + 1 :]
    return 0 <= start < end - 1 and prefix.count("{") == 1 and "}" not in rest


def has_hash_tag(prefix: str) -> bool:
    return "{" in prefix


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A backend URL split into what redis-py connects to and polyjobs' own options."""

    url: str  # for redis-py (without polyjobs' query options)
    prefix: str
    redacted: str
    cluster: bool = False

    @classmethod
    def parse(cls, url: str) -> RedisUrl:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise InvalidArgumentError(
                f"not a Redis URL: {redact_url(url)!r} (expected redis://, rediss:// or unix://)"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = DEFAULT_PREFIX
        cluster = False
        rest = []
        for name, value in query:
            if name == "prefix":
                prefix = value
            elif name == "cluster":
                cluster = value.lower() in ("1", "true", "yes", "on")
            else:
                rest.append((name, value))
        if not prefix or any(c in prefix for c in " \n") or not _one_hash_tag(prefix):
            raise InvalidArgumentError(f"invalid key prefix {prefix!r} in {redact_url(url)!r}")
        clean = urlunsplit(parts._replace(query=urlencode(rest)))
        if cluster and parts.scheme == "unix":
            raise InvalidArgumentError(f"a cluster needs host:port URLs: {redact_url(url)!r}")
        return cls(clean, prefix, redact_url(url), cluster)


Client = Redis | RedisCluster


def make_client(url: RedisUrl, *, blocking: bool) -> Client:
    """A client for ``url``. A ``blocking`` one has no socket timeouts: its callers bound each
    call themselves (scripts, blocking pops), which spares a timer task per write."""
    options: dict[str, Any] = {
        "decode_responses": True,
        # bytes that are not UTF-8 (a record written by something else) decode with U+FFFD, so
        # the record reads as corrupted instead of the reply failing on every call
        "encoding_errors": "replace",
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": None if blocking else COMMAND_TIMEOUT,
        "client_name": "polyjobs",
        # redis-py 8 skips its check of an idle pooled connection (EOF pending: killed, server
        # restarted) whenever maintenance notifications are "auto" (the default), so the first
        # call on such a connection failed; polyjobs speaks RESP2 and has no use for them.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    if url.cluster:
        cluster: RedisCluster = RedisCluster.from_url(url.url, **options)
        return cluster
    client: Redis = Redis.from_pool(_Pool.from_url(url.url, **options))
    return client


def make_multiplexed(url: RedisUrl) -> Multiplexed | None:
    """One multiplexed connection for the backend's scripts, where it can serve ``url``: not
    on a cluster (calls go to the node of their slot), not over TLS, and only with hiredis."""
    if url.cluster or urlsplit(url.url).scheme == "rediss" or not multiplex.available():
        return None
    return Multiplexed(
        url.url, client_name="polyjobs", timeout=COMMAND_TIMEOUT, connect_timeout=CONNECT_TIMEOUT
    )


class _Pool(ConnectionPool):
    """redis-py's pool, which also renews an idle connection the server closed (see
    :func:`_renew_if_closed`) before handing it out, for commands and scripts alike."""

    async def ensure_connection(self, connection: Any) -> None:
        await super().ensure_connection(connection)
        await _renew_if_closed(connection)


@asynccontextmanager
async def connection_for(client: Client, key: str) -> AsyncIterator[Any]:
    """A connection of ``client`` that serves ``key`` (on a cluster: the node owning its slot),
    dropped rather than reused when the block does not end normally (cancelled, timed out,
    failed mid-reply)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        node = client.get_node_from_key(key)
        if node is None:  # pragma: no cover - a primary always exists for a covered slot
            raise BackendError(f"no Redis Cluster node serves key {key!r}")
        conn = node.acquire_connection()
        try:
            await _renew_if_closed(conn)
            yield conn
        except BaseException as exc:
            if not isinstance(exc, ResponseError):
                await conn.disconnect(nowait=True)
            if isinstance(exc, MovedError | AskError | ClusterDownError | ConnectionError):
                await _remap(client)
            raise
        finally:
            node.release(conn)
        return
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        yield conn
    except BaseException as exc:
        if not isinstance(exc, ResponseError):
            await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


async def _renew_if_closed(conn: Any) -> None:
    """Reconnect an idle pooled connection that has something to read before anything is sent
    on it: nothing is expected on it, so that is the server's end of file (client killed,
    server restarted) or a stray reply. Nothing was sent yet, so reconnecting is always safe.

    One zero-timeout poll of the socket (about a microsecond), because the event loop may not
    have seen the end of file yet (redis-py's own check reads what the loop has seen), and a
    command written into a closed connection fails on reading with no way to tell whether it
    ran; retrying scripts is not an option.
    """
    writer = getattr(conn, "_writer", None)
    sock = writer.get_extra_info("socket") if writer is not None else None
    if sock is None or not _readable(sock.fileno()):
        return
    await conn.disconnect()
    await conn.connect()


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - no poll() on Windows


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact_text(text)


class Translated:
    """``with errors:`` turns redis-py and socket errors into ``BackendError`` naming the
    (redacted) URL. One per backend, used around every call (reusable, nests)."""

    __slots__ = ("redacted",)

    def __init__(self, redacted: str) -> None:
        self.redacted = redacted

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, RedisError | OSError):
            raise BackendError(f"redis {self.redacted}: {one_line(exc)}") from exc


async def _remap(client: RedisCluster) -> None:
    """The topology changed (or a node is gone): map the slots again, best-effort."""
    with contextlib.suppress(RedisError, OSError):
        await asyncio.wait_for(client.nodes_manager.initialize(), CONNECT_TIMEOUT)


async def blocking_call(client: Client, key: str, timeout: float, *command: str) -> Any:
    """Run a blocking command on ``key`` that gives up after ``timeout`` seconds
    (``BZPOPMIN``, ``XREAD BLOCK``); the connection is dropped if the call does not end
    normally (cancelled, timed out, failed)."""
    async with connection_for(client, key) as conn, asyncio.timeout(timeout + BLOCK_MARGIN):
        await conn.send_command(*command)
        return await conn.read_response()


class BlockingCalls:
    """Blocking commands (``BZPOPMIN``, ``XREAD BLOCK``) of one backend: each on a connection of
    its own for the time it blocks. Where :func:`make_multiplexed` serves the URL, these are
    :class:`~polyjobs.backends.redis.multiplex.Multiplexed` connections kept idle between
    calls (no pool checkout, stream reader or command packing in Python between a wake-up and
    the caller); otherwise the pooled ``client`` (see :func:`blocking_call`). A call that does
    not end normally (cancelled, timed out, failed) drops its connection."""

    def __init__(self, url: RedisUrl, client: Client) -> None:
        self._url = url
        self._client = client
        self._lean = make_multiplexed(url) is not None
        self._idle: list[Multiplexed] = []
        self._busy: set[Multiplexed] = set()
        self._closed = False

    @property
    def lean(self) -> bool:
        """Whether calls go over multiplexed connections (and :meth:`call_many` may be used)."""
        return self._lean

    async def call(self, key: str, timeout: float, *command: str) -> Any:
        if not self._lean:
            return await blocking_call(self._client, key, timeout, *command)
        return (await self._on_connection(timeout, (command,), False))[0]

    def call_many(self, timeout: float, *commands: tuple[Any, ...] | bytes) -> Awaitable[list[Any]]:
        """A blocking command and the commands that run in Redis right after it ends, sent in
        one write on one connection (only when :attr:`lean`); their replies in order, an error
        reply in its command's place (a ``ResponseError``)."""
        if not self._lean:
            raise ConnectionError("pipelined blocking calls need a multiplexed connection")
        return self._on_connection(timeout, commands, True)  # (no coroutine level of its own)

    async def _on_connection(
        self, timeout: float, commands: tuple[tuple[Any, ...] | bytes, ...], many: bool
    ) -> list[Any]:
        if self._closed:
            raise ConnectionError("the backend's connections are closed")
        conn = self._idle.pop() if self._idle else self._new()
        self._busy.add(conn)
        done = False
        # one timer that drops the connection, which fails the call (``TimeoutError``): on a
        # woken worker's path, cheaper than ``asyncio.timeout`` (its object, task
        # cancellation and state); the connection is made within its own connect timeout
        timer = asyncio.get_running_loop().call_later(timeout + BLOCK_MARGIN, conn.expire)
        try:
            if many:
                replies = await conn.call_many(*commands, return_errors=True)
            else:
                replies = [await conn.call(*commands[0])]
            done = True
            return replies
        finally:
            timer.cancel()
            self._busy.discard(conn)
            # (a deadline due in the turn its reply came closed it though the call succeeded)
            if done and not self._closed and not conn.closed:
                self._idle.append(conn)
            else:
                await conn.close()

    def _new(self) -> Multiplexed:
        # no timer of its own: the call's own timeout bounds it
        return Multiplexed(
            self._url.url, client_name="polyjobs", timeout=None, connect_timeout=CONNECT_TIMEOUT
        )

    async def close(self) -> None:
        """Close every connection, the waiting ones too: their calls fail at once
        (``ConnectionError``), as when the pooled client is closed."""
        self._closed = True
        conns = [*self._idle, *self._busy]
        self._idle = []
        for conn in conns:
            await conn.close()
