"""Running a program's main coroutine on the fastest event loop available.

:func:`run` is :func:`asyncio.run` with uvloop's loop when uvloop is installed (the ``fast``
extra) and not turned off with ``POLYJOBS_UVLOOP=0``: every ``polyjobs`` command runs this way,
and so can a program that uses the library::

    import polyjobs

    polyjobs.run(main())

uvloop makes a polyjobs worker and producer markedly faster (see the benchmarks README); the
standard loop is used where uvloop is missing (Windows, a plain install) or turned off.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: ``POLYJOBS_UVLOOP=0`` (or ``false``/``no``/``off``) keeps the standard asyncio loop.
ENV = "POLYJOBS_UVLOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when it is installed and wanted, else None (asyncio's own)."""
    if os.environ.get(ENV, "").strip().lower() in {"0", "false", "no", "off"}:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` would use."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run ``main`` to its end on a new event loop (uvloop's when available) and close it."""
    with asyncio.Runner(debug=debug, loop_factory=loop_factory()) as runner:
        return runner.run(main)


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` is set within ``timeout`` seconds (at once when ``timeout`` <= 0).
    Not ``asyncio.wait_for``: on Python 3.11 it returns the result of an inner wait that ended
    in the same turn as a cancellation of the caller, and the cancellation is lost (a worker
    told to stop would go on fetching)."""
    if timeout <= 0:
        return event.is_set()
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
