"""One Redis connection carrying many calls at once: the hot path of the Redis backend.

The backend's scripts (an add, a finish with the next fetch, a lease renewal) are one
``EVALSHA`` each, and a process makes many of them concurrently (a worker's finish, fetch and
lease loops; a producer's concurrent adds). Instead of checking a connection out of a pool for
every call, :class:`Multiplexed` writes each command on one connection as soon as it is made
and matches the replies to their callers in order (Redis answers the commands of a connection
in the order they were sent). Commands made while others are in flight go out together in one
write at the end of the event loop's turn. Replies are parsed by hiredis, straight from
``asyncio.Protocol.data_received``: no stream reader, no pool, no per-call timer.

Behaviour kept from the pooled client:

* a connection the server closed while idle (client killed, server restarted) is noticed before
  anything is written on it (one zero-timeout poll) and replaced, so nothing can run twice;
* a connection lost with calls in flight fails exactly those calls (``ConnectionError``), and the
  next call connects again; a refused or unreachable server fails at once or after
  ``connect_timeout``;
* a call with no reply after ``timeout`` seconds (unless ``None``) fails (``TimeoutError``)
  with every call behind it, and the connection is dropped;
* a cancelled caller does not disturb the others: its reply is read and dropped;
* error replies raise redis-py's exception classes (``NoScriptError``, ``OutOfMemoryError``,
  ``ResponseError``, ...), so callers and error translation treat both clients alike.

Only plain TCP and Unix sockets with hiredis installed: TLS (``rediss://``), Redis Cluster and
installations without hiredis use the pooled redis-py client (see
:func:`polyjobs.backends.redis.connection.make_multiplexed`).
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from collections.abc import Awaitable
from time import monotonic
from typing import Any

from redis._parsers.base import BaseParser
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

hiredis: Any
try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is an optional speed-up
    hiredis = None


class _Failure:
    """An error reply, as hiredis hands it over (``replyError``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Head:
    """The first arguments of commands sent many times (e.g. ``EVALSHA``, a script's SHA and its
    keys), packed once: :meth:`Multiplexed.call_after` packs only the rest of each call."""

    __slots__ = ("body", "count")

    def __init__(self, *args: Any) -> None:
        packed = hiredis.pack_command(args)
        self.count = len(args)
        self.body = packed[packed.index(b"\r\n") + 2 :]  # without the array's length

    def pack(self, args: tuple[Any, ...]) -> bytes:
        """The whole command, as ``hiredis.pack_command((*head, *args))`` packs it."""
        rest = hiredis.pack_command(args)
        return b"*%d\r\n%b%b" % (self.count + len(args), self.body, rest[rest.index(b"\r\n") + 2 :])


class _Protocol(asyncio.Protocol):
    """The replies of one connection, handed to the waiting calls in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace", replyError=_Failure)
        self.waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: Any = None  # asyncio's or uvloop's (not an asyncio.Transport subclass)
        self.lost: BaseException | None = None
        self.pending: list[bytes] = []  # written at the end of this loop turn
        self.poller: Any = None  # polls the socket for an end of file the loop has not seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.poller = select.poll()
            self.poller.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiters = self.waiters
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._abort(ConnectionError(f"Protocol error from Redis: {exc}"))
                return
            if reply is False:
                return
            if not waiters:  # nothing was asked: the connection is out of step
                self._abort(ConnectionError("Redis sent a reply nobody asked for"))
                return
            future = waiters.popleft()[0]
            if future.done():  # the caller was cancelled or timed out
                continue
            if type(reply) is _Failure:
                future.set_exception(BaseParser.parse_error(reply.text))  # type: ignore[no-untyped-call]
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError("Connection closed by server." if exc is None else str(exc)))

    def fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        self.pending.clear()
        while self.waiters:
            future = self.waiters.popleft()[0]
            if not future.done():
                future.set_exception(exc)
                # a call cancelled meanwhile never looks: do not warn about it
                future.exception()

    def _abort(self, exc: BaseException) -> None:
        self.fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        if self.pending and self.transport is not None and self.lost is None:
            data = b"".join(self.pending)
            self.pending.clear()
            self.transport.write(data)

    def idle_and_closed(self) -> bool:
        """Nothing is in flight and the socket has something to read: that is the server's
        end of file (or a stray reply), which the event loop may not have seen yet."""
        if self.lost is not None:
            return True
        if self.waiters or self.poller is None:
            return False
        return bool(self.poller.poll(0))


class Multiplexed:
    """Calls to one Redis server over one connection, many in flight at once (see the module
    docstring). Connects on first use and again after the connection is lost."""

    def __init__(
        self,
        url: str,
        *,
        client_name: str = "polyjobs",
        timeout: float | None = 15.0,
        connect_timeout: float = 5.0,
    ) -> None:
        options = parse_url(url)
        self._path: str | None = options.get("path")
        self._host: str = options.get("host") or "localhost"
        self._port = int(options.get("port") or 6379)
        self._db = int(options.get("db") or 0)
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._client_name = client_name
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False

    def __repr__(self) -> str:
        where = self._path or f"{self._host}:{self._port}"
        return f"<Multiplexed {where} db={self._db}>"

    # -- calls ---------------------------------------------------------------------------
    def _live(self) -> _Protocol | None:
        """The connection, when it can be written on now (else the caller connects)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or protocol.idle_and_closed():
            return None
        return protocol

    async def call(self, *command: Any) -> Any:
        """Send one command and return its reply (an error reply raises)."""
        protocol = self._live() or await self._connected()
        return await self._send(protocol, hiredis.pack_command(command))

    def call_after(self, head: Head, args: tuple[Any, ...]) -> Awaitable[Any]:
        """``call(*head_arguments, *args)``, with the head packed once beforehand. Not a
        coroutine: on a live connection the command is written (or queued) at once and the
        reply's future returned, one coroutine less per call on the hot path."""
        protocol = self._live()
        if protocol is None:
            return self._call_connected(head.pack(args))
        return self._send(protocol, head.pack(args))

    async def _call_connected(self, data: bytes) -> Any:
        return await self._send(await self._connected(), data)

    def _send(self, protocol: _Protocol, data: bytes) -> asyncio.Future[Any]:
        """:meth:`_queue` for one command, inline: this is the hot path."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        waiters = protocol.waiters
        waiters.append((future, monotonic()))
        if len(waiters) == 1:
            protocol.transport.write(data)
        else:
            if not protocol.pending:
                loop.call_soon(protocol.flush)
            protocol.pending.append(data)
        if self._watchdog is None and self.timeout is not None:
            self._watchdog = loop.call_later(self.timeout, self._check)
        return future

    async def call_many(
        self, *commands: tuple[Any, ...] | bytes, return_errors: bool = False
    ) -> list[Any]:
        """Send several commands in one write; their replies in order. Every command runs
        (Redis does not stop at an error), and the first error reply then raises, or with
        ``return_errors`` takes its command's place in the list (as a ``ResponseError``). A
        command given as ``bytes`` is packed already (e.g. by :meth:`Head.pack`)."""
        protocol = self._live() or await self._connected()
        packed = [c if type(c) is bytes else hiredis.pack_command(c) for c in commands]
        futures = self._queue(protocol, packed)
        results: list[Any] = []
        error: BaseException | None = None
        for future in futures:
            try:
                results.append(await future)
            except ResponseError as exc:  # the next replies still come: read them all
                error = error or exc
                results.append(exc)
        if error is not None and not return_errors:
            raise error
        return results

    def _queue(self, protocol: _Protocol, packed: list[bytes]) -> list[asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        now = monotonic()
        futures = []
        for _ in packed:
            future = loop.create_future()
            protocol.waiters.append((future, now))
            futures.append(future)
        if len(protocol.waiters) == len(packed):
            # nothing else in flight: write now, no batching to wait for
            protocol.transport.write(b"".join(packed))
        else:
            if not protocol.pending:
                loop.call_soon(protocol.flush)
            protocol.pending.extend(packed)
        if self._watchdog is None and self.timeout is not None:
            self._watchdog = loop.call_later(self.timeout, self._check)
        return futures

    def _check(self) -> None:
        """When the oldest call in flight has had ``timeout`` seconds, fail it and every call
        behind it and drop the connection; otherwise look again when it is due. One timer per
        connection, not one per call."""
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or not protocol.waiters:
            return
        assert self.timeout is not None
        loop = asyncio.get_running_loop()
        due = protocol.waiters[0][1] + self.timeout
        if monotonic() >= due:
            self._drop()
            return
        self._watchdog = loop.call_later(due - monotonic(), self._check)

    @property
    def closed(self) -> bool:
        """Closed for good (:meth:`close` or :meth:`expire`): not to be used again."""
        return self._closed

    def expire(self) -> None:
        """A deadline passed: fail the calls in flight (``TimeoutError``) and close this
        connection for good, also while it is being made (that call then fails)."""
        self._closed = True
        self._drop()

    def _drop(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol._abort(TimeoutError(f"Timeout reading from {self._where()}"))

    # -- connecting ----------------------------------------------------------------------
    def _where(self) -> str:
        return self._path or f"{self._host}:{self._port}"

    async def _connected(self) -> _Protocol:
        if self._closed:
            raise ConnectionError(f"connection to {self._where()} is closed")
        old = self._protocol
        if old is not None:
            self._protocol = None
            if old.transport is not None:
                old.transport.abort()
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_future()
            connecting = self._connecting
            try:
                protocol = await self._connect()
                if self._closed:  # closed while it was being made: not to be used
                    protocol._abort(ConnectionError(f"connection to {self._where()} closed"))
                    raise ConnectionError(f"connection to {self._where()} is closed")
            except BaseException as exc:
                self._connecting = None
                connecting.set_exception(exc)
                connecting.exception()  # retrieved: others may not be waiting
                raise
            self._connecting = None
            self._protocol = protocol
            connecting.set_result(protocol)
            return protocol
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self._path is not None:
                    _, protocol = await loop.create_unix_connection(_Protocol, self._path)
                else:
                    _, protocol = await loop.create_connection(_Protocol, self._host, self._port)
        except TimeoutError:
            raise TimeoutError(f"Timeout connecting to {self._where()}") from None
        except OSError as exc:
            raise ConnectionError(f"Error connecting to {self._where()}. {exc}") from None
        hello: list[tuple[Any, ...]] = []
        if self._password is not None:
            # a password alone is the default user's (AUTH with both, as redis-py's HELLO
            # sends it): the one-argument AUTH is refused where the default user has none
            hello.append(("AUTH", self._username or "default", self._password))
        if self._db:
            hello.append(("SELECT", self._db))
        if self._client_name:
            hello.append(("CLIENT", "SETNAME", self._client_name))
        if hello:
            futures = self._queue(protocol, [hiredis.pack_command(c) for c in hello])
            try:
                async with asyncio.timeout(self.connect_timeout):
                    for future in futures:
                        await future
            except BaseException as exc:
                protocol._abort(ConnectionError(f"connection to {self._where()} lost"))
                if isinstance(exc, TimeoutError):
                    raise TimeoutError(f"Timeout connecting to {self._where()}") from None
                raise
        return protocol

    async def close(self) -> None:
        self._closed = True
        protocol, self._protocol = self._protocol, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if protocol is not None:
            protocol.fail(ConnectionError(f"connection to {self._where()} closed"))
            if protocol.transport is not None:
                protocol.transport.close()


def available() -> bool:
    """Whether :class:`Multiplexed` can be used here (it parses with hiredis)."""
    return hiredis is not None
