"""Backend outages in the logs: one warning when a loop first fails to reach the backend, one
line when it is back (with how long it was gone), nothing in between.

A worker's loops (fetch, finish, lease renewal, stalled-job check, heartbeat, scheduler) and
the runtime's (control channel, burst idle check) retry a failed backend call every second or
so; logging each failure drowned the log while the backend was down (a full traceback every
second per scheduler). Outages are tracked per process and per loop kind: the first failure of
a kind logs a WARNING, later ones log at DEBUG, and the first success after them logs an INFO
line with the outage's duration and how many calls failed. Only :class:`BackendError` counts as
an outage; any other error is a bug and is logged as before, every time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from polyjobs.errors import BackendError

log = logging.getLogger("polyjobs.outage")


@dataclass(slots=True)
class _Open:
    since: float  # time.monotonic() of the first failure
    failures: int


class Outages:
    """The open outages of one process, by loop kind."""

    def __init__(self) -> None:
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()

    def failed(self, kind: str, exc: BaseException, where: str = "") -> bool:
        """Record a failed backend call of loop ``kind`` (``where``: e.g. the queue). False
        when ``exc`` is not a backend error (the caller logs it as it would any error)."""
        if not isinstance(exc, BackendError):
            return False
        at = f" ({where})" if where else ""
        with self._lock:
            current = self._open.get(kind)
            if current is None:
                self._open[kind] = _Open(time.monotonic(), 1)
            else:
                current.failures += 1
        if current is None:
            log.warning(
                "%s%s: backend unreachable, retrying quietly until it is back: %s", kind, at, exc
            )
        else:
            log.debug("%s%s: backend still unreachable: %s", kind, at, exc)
        return True

    def ok(self, kind: str) -> None:
        """A backend call of loop ``kind`` succeeded: close its outage, if any."""
        if kind not in self._open:  # the hot path: no lock
            return
        with self._lock:
            current = self._open.pop(kind, None)
        if current is not None:
            took = time.monotonic() - current.since
            calls = "call" if current.failures == 1 else "calls"
            log.info(
                "%s: backend is back after %.1fs (%d failed %s)",
                kind,
                took,
                current.failures,
                calls,
            )

    def open_kinds(self) -> list[str]:
        """The loop kinds whose backend calls are failing now."""
        with self._lock:
            return sorted(self._open)


#: The process's outages.
OUTAGES = Outages()
