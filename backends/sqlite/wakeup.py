"""Waking fetches that wait for work: at once inside a process; across processes, when the
write-ahead log is written (on Linux) and by polling.

Inside one process, every backend object on the same file shares one :class:`FileSignal`, so
an ``add`` through any of them wakes the fetches waiting on that queue at once, whatever event
loop or thread they run on. Across processes, a waiting fetch reads ``PRAGMA data_version`` (a
counter in shared memory that moves when another connection commits: no file read, no lock):
at once when the file's write-ahead log is written (:mod:`.watch`, where inotify exists), and
every few milliseconds in any case, backing off to :data:`MAX_POLL` while nothing changes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import ClassVar

from polyjobs.backends.sqlite import watch

MIN_POLL = 0.001
MAX_POLL = 0.1
#: How much a quiet poll's interval grows: gently, so that jobs arriving every few milliseconds
#: from another process are seen within about a millisecond (doubling, a job 5 ms after the
#: last was seen only at the 7 ms look), while an idle fetch still reaches MAX_POLL within a
#: second (~20 looks)
POLL_GROWTH = 1.25


class Wake(asyncio.Event):
    """A waiting fetch's wake-up: set with ``look`` by this process (work may have come: look
    at the queue), or without it by the write-ahead log's watch (another process may have
    committed: read ``data_version``)."""

    def __init__(self) -> None:
        super().__init__()
        self.look = False

    def to_look(self) -> None:
        self.look = True
        self.set()


#: A fetch's registered wake-up, in a list so that it can swap in a fresh one after a wake-up
Waiter = list[Wake]


class FileSignal:
    """Wake-ups for the fetches waiting on the queues of one database file in this process."""

    # Backend objects are built independently from a URL (``factory(url)``), so nothing can
    # hand two of them a shared object: this class-level map is the one meeting point, keyed
    # by the file's resolved path and emptied as the last object of a file closes.
    _files: ClassVar[dict[str, FileSignal]] = {}
    _files_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self._users = 0
        self._lock = threading.Lock()
        self._waiters: dict[str, dict[Wake, asyncio.AbstractEventLoop]] = {}
        self._watch: watch.Watch | None = None
        self._watching = False  # a watch was tried (started, or not available here)

    @classmethod
    def acquire(cls, path: str) -> FileSignal:
        with cls._files_lock:
            signal = cls._files.get(path)
            if signal is None:
                signal = cls._files[path] = FileSignal(path)
            signal._users += 1
            return signal

    @classmethod
    def release(cls, path: str, signal: FileSignal) -> None:
        with cls._files_lock:
            signal._users -= 1
            if signal._users > 0:
                return
            if cls._files.get(path) is signal:
                del cls._files[path]
        with signal._lock:
            stopping, signal._watch = signal._watch, None
        if stopping is not None:
            stopping.stop()

    def register(self, queue: str) -> Wake:
        """Start listening before looking at the queue, so no wake-up falls in between."""
        event = Wake()
        with self._lock:
            self._waiters.setdefault(queue, {})[event] = asyncio.get_running_loop()
            if not self._watching:
                self._watching = True
                self._watch = watch.start(self.path, self._poke, self._waited_on)
            current = self._watch
        if current is not None:
            current.wanted()
        return event

    def unregister(self, queue: str, event: Wake) -> None:
        with self._lock:
            waiters = self._waiters.get(queue)
            if waiters is not None:
                waiters.pop(event, None)
                if not waiters:
                    del self._waiters[queue]

    def notify(self, queue: str | None = None) -> None:
        """Wake the fetches waiting on ``queue`` (on every queue when None) to look."""
        with self._lock:
            if queue is None:
                woken = [w for ws in self._waiters.values() for w in ws.items()]
                self._waiters.clear()
            else:
                woken = list(self._waiters.pop(queue, {}).items())
        _wake(woken, look=True)

    def _waited_on(self) -> bool:
        return bool(self._waiters)

    def _poke(self) -> None:
        """From the watch's thread: the write-ahead log was written; every waiting fetch reads
        ``data_version`` (they stay registered)."""
        with self._lock:
            woken = [w for ws in self._waiters.values() for w in ws.items()]
        _wake(woken, look=False)


def _wake(woken: list[tuple[Wake, asyncio.AbstractEventLoop]], look: bool) -> None:
    """Set each wake-up in its own loop (from any thread), with ``look`` or without."""
    for event, loop in woken:
        try:
            loop.call_soon_threadsafe(event.to_look if look else event.set)
        except RuntimeError:
            pass  # that loop has closed; nobody is waiting there any more
