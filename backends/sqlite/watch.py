"""Commits by other processes, seen as they happen: a watch on the database's write-ahead log.

A waiting fetch learns of another process's commit by reading ``PRAGMA data_version``, and
without a push it can only read it on a schedule (:mod:`.wakeup`). On Linux, inotify tells when
a file is written: every commit appends to ``<file>-wal`` (the backend always runs in WAL mode),
so a watch on it wakes the waiting fetches to read ``data_version`` at once instead of at their
next poll. A write is not yet a commit (the frames are written before the commit is published
in the shared-memory index), so a wake-up that finds nothing new goes back to polling from the
shortest interval; the poll schedule stays as the fallback for everything a watch cannot see.

One thread per watched file and process, parked while no fetch waits (so a busy process pays
nothing for writes it is not waiting for), waking the fetches at most once a millisecond (so a
busy queue of another process costs an idle fetch no more looks than polling did). Where
inotify is missing (not Linux, no libc, no instances left), :func:`start` returns None and
fetches poll as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002
#: Seconds between two wake-ups of the waiting fetches (their shortest poll interval).
COALESCE = 0.001
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.inotify_init1  # noqa: B018 - present only on Linux
        libc.inotify_add_watch  # noqa: B018
    except (OSError, AttributeError, TypeError):  # (TypeError: no C library found by name)
        return None
    return libc


class Watch:
    """Calls ``changed()`` (on its own thread) whenever ``<path>-wal`` is written while
    ``waiting()`` says a fetch waits; :meth:`wanted` wakes it when one starts to."""

    def __init__(
        self, fd: int, wal: bytes, changed: Callable[[], None], waiting: Callable[[], bool]
    ) -> None:
        self._fd = fd
        self._wal = wal
        self._changed = changed
        self._waiting = waiting
        self._wanted = threading.Event()
        self._stop_r, self._stop_w = os.pipe()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="polyjobs-wal-watch", daemon=True)
        self._thread.start()

    def wanted(self) -> None:
        """A fetch has started waiting: watch (again)."""
        self._wanted.set()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        os.write(self._stop_w, b"x")
        self._wanted.set()
        self._thread.join(timeout=5)
        for fd in (self._fd, self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        try:
            while not self._stopped:
                # parked while nobody waits: cleared first, so a fetch that starts waiting
                # meanwhile either is seen by the check or sets the event after the clear
                self._wanted.clear()
                if not self._waiting():
                    self._wanted.wait()
                    continue
                ready = poller.poll()
                if self._stopped or any(fd == self._stop_r for fd, _ in ready):
                    return
                if self._wal_written() and self._waiting():
                    self._changed()
                    # at most one wake-up per COALESCE: the writes meanwhile (a busy queue of
                    # another process, say) are read as one, as a poll at that interval would
                    time.sleep(COALESCE)
        except Exception:  # pragma: no cover - a watch that fails leaves the polls
            log.exception("SQLite write-ahead log watch failed; waiting fetches poll instead")

    def _wal_written(self) -> bool:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return False
        written, at = False, 0
        while at + _EVENT.size <= len(data):
            _, mask, _, size = _EVENT.unpack_from(data, at)
            name = data[at + _EVENT.size : at + _EVENT.size + size].rstrip(b"\0")
            at += _EVENT.size + size
            written = written or (mask & _IN_MODIFY != 0 and name == self._wal)
        return written


def start(path: str, changed: Callable[[], None], waiting: Callable[[], bool]) -> Watch | None:
    """A watch on the write-ahead log of the database at ``path`` (resolved), or None where
    inotify cannot be used. The folder is watched, not the log itself: the log is deleted and
    made again when the last connection to the file closes."""
    libc = _libc()
    if libc is None:
        return None
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        log.debug("inotify_init1 failed (errno %d): waiting fetches poll", ctypes.get_errno())
        return None
    file = Path(path)
    folder = os.fsencode(file.parent)
    if libc.inotify_add_watch(fd, folder, _IN_MODIFY) < 0:
        log.debug("inotify_add_watch failed (errno %d): waiting fetches poll", ctypes.get_errno())
        os.close(fd)
        return None
    return Watch(fd, os.fsencode(file.name + "-wal"), changed, waiting)
