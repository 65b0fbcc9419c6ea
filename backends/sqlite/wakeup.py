"""Waking fetches that wait for work: at once inside a process, by polling across processes.

Inside one process, every backend object on the same file shares one :class:`FileSignal`, so
an ``add`` through any of them wakes the fetches waiting on that queue at once, whatever event
loop or thread they run on. Across processes nothing can push to us, so a waiting fetch polls
``PRAGMA data_version`` (a counter in shared memory that moves when another connection
commits: no file read, no lock) every few milliseconds, backing off to :data:`MAX_POLL` while
nothing changes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import ClassVar

MIN_POLL = 0.001
MAX_POLL = 0.1
#: How much a quiet poll's interval grows: gently, so that jobs arriving every few milliseconds
#: from another process are seen within about a millisecond (doubling, a job 5 ms after the
#: last was seen only at the 7 ms look), while an idle fetch still reaches MAX_POLL within a
#: second (~20 looks)
POLL_GROWTH = 1.25

#: A fetch's registered event, in a list so that it can swap in a fresh one after a wake-up
Waiter = list[asyncio.Event]


class FileSignal:
    """Wake-ups for the fetches waiting on the queues of one database file in this process."""

    # Backend objects are built independently from a URL (``factory(url)``), so nothing can
    # hand two of them a shared object: this class-level map is the one meeting point, keyed
    # by the file's resolved path and emptied as the last object of a file closes.
    _files: ClassVar[dict[str, FileSignal]] = {}
    _files_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._users = 0
        self._lock = threading.Lock()
        self._waiters: dict[str, dict[asyncio.Event, asyncio.AbstractEventLoop]] = {}

    @classmethod
    def acquire(cls, path: str) -> FileSignal:
        with cls._files_lock:
            signal = cls._files.get(path)
            if signal is None:
                signal = cls._files[path] = FileSignal()
            signal._users += 1
            return signal

    @classmethod
    def release(cls, path: str, signal: FileSignal) -> None:
        with cls._files_lock:
            signal._users -= 1
            if signal._users <= 0 and cls._files.get(path) is signal:
                del cls._files[path]

    def register(self, queue: str) -> asyncio.Event:
        """Start listening before looking at the queue, so no wake-up falls in between."""
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(queue, {})[event] = asyncio.get_running_loop()
        return event

    def unregister(self, queue: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(queue)
            if waiters is not None:
                waiters.pop(event, None)
                if not waiters:
                    del self._waiters[queue]

    def notify(self, queue: str | None = None) -> None:
        """Wake the fetches waiting on ``queue`` (on every queue when None)."""
        with self._lock:
            if queue is None:
                woken = [w for ws in self._waiters.values() for w in ws.items()]
                self._waiters.clear()
            else:
                woken = list(self._waiters.pop(queue, {}).items())
        for event, loop in woken:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that loop has closed; nobody is waiting there any more
