"""Wake-ups for fetches that wait for work: ``LISTEN`` on one dedicated connection.

Every transition that makes a job ready (an add, a retry, a release, a stall recovery, a
resume, a promotion, a rate-limit change) sends ``NOTIFY <channel>, '<queue>'`` in its own
transaction, so the notification arrives only once the change is visible. One connection per
backend object (outside the pool, opened by the first fetch that has to wait) listens on the
schema's channel and sets the events of the fetches waiting on that queue.

A waiting fetch registers its event *before* it looks at the queue, so nothing that commits
in between is missed. Notifications can still be lost while the listening connection is down
(server restarted, connection killed): then the waits are cut to :data:`DOWN_POLL`, the
connection is re-opened in the background with backoff, and every waiter is woken once it is
back. While it is up, a wait still ends after :data:`IDLE_POLL` at the latest, the bounded
fallback for a notification lost some other way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

#: Longest wait while the listening connection is up (a fetch then looks again).
IDLE_POLL = 5.0
#: Longest wait while it is down.
DOWN_POLL = 0.5
RECONNECT_MAX = 2.0

logger = logging.getLogger(__name__)


class Waker:
    """The listening connection of one backend object and the events of its waiting fetches."""

    def __init__(
        self, connect: Callable[[], Awaitable[asyncpg.Connection]], channel: str, where: str
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._where = where
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._reconnect: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._lock = asyncio.Lock()

    @property
    def up(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def poll(self) -> float:
        """How long a wait may last before the fetch looks again regardless."""
        return IDLE_POLL if self.up else DOWN_POLL

    async def start(self) -> None:
        """Open the listening connection the first time (errors propagate: the caller's
        fetch fails like any other backend call, and the next one tries again)."""
        if self._started or self._closed:
            return
        async with self._lock:
            if self._started or self._closed:
                return
            await self._listen()
            self._started = True

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            await _close_quietly(conn)
            raise
        conn.add_termination_listener(self._on_lost)
        if self._closed:
            await _close_quietly(conn)
            return
        self._conn = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        for event in self._waiters.pop(str(payload), ()):
            event.set()

    def _on_lost(self, _conn: Any) -> None:
        self._conn = None
        self.wake_all()
        if not self._closed and (self._reconnect is None or self._reconnect.done()):
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.05
        while not self._closed and not self.up:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                logger.debug("LISTEN connection to %s: %s", self._where, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            self.wake_all()  # something may have been sent while nobody listened

    def register(self, queue: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault(queue, set()).add(event)
        return event

    def unregister(self, queue: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(queue)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[queue]

    def wake_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for events in waiters.values():
            for event in events:
                event.set()

    async def close(self) -> None:
        self._closed = True
        self.wake_all()
        task, self._reconnect = self._reconnect, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2.0)
    except (Exception, TimeoutError):
        conn.terminate()
