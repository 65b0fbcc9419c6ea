"""What the parent of ``polyjobs start --processes N`` shows and serves while it supervises.

The :class:`~polyjobs.cli.processes.Supervisor` runs in the main thread (it owns the signals);
this runs one asyncio loop in a thread beside it, on one connection to the shared backend:

- on a terminal (text output), one live view instead of N children's streams: the queues'
  counts and their throughput over the last minute, read from the backend (which every child
  writes to), and one row per child (pid, up / restarting / exited, restarts); the children's
  own lines print above it, prefixed ``[worker I]``;
- with ``--board``, the web board over that backend (what it shows is the backend's);
- with ``--metrics-port``, the Prometheus gauges of what the backend holds (jobs by state,
  paused, workers online, oldest waiting age). The per-process counters and the processing-time
  histogram are counted where jobs run: each child serves its own on the next ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyjobs.cli.console import Column, Console, fit_table
from polyjobs.cli.live import REFRESH, JobFeed, render_view
from polyjobs.redact import redact_text

if TYPE_CHECKING:
    from rich.console import RenderableType

    from polyjobs.cli.processes import Supervisor
    from polyjobs.plugins import PluginHost
    from polyjobs.runtime import QueueSpec
    from polyjobs.settings import Settings
    from polyjobs.stats import QueueStats

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ParentServing:
    """What the parent serves: the live view, the board, the metrics (host, port)."""

    live: bool = False
    board: tuple[str, int] | None = None
    metrics: tuple[str, int] | None = None

    def __bool__(self) -> bool:
        return self.live or self.board is not None or self.metrics is not None


def render_parent(
    stats: list[QueueStats],
    shorts: Mapping[str, str],
    supervisor: Supervisor,
    width: int,
    height: int,
    now: float,
) -> RenderableType:
    """The parent's view: the single-process view's counts table, throughput, the workers."""
    from rich.console import Group
    from rich.text import Text

    counts = {
        s.queue: {
            "waiting": s.waiting,
            "active": s.active,
            "delayed": s.delayed,
            "completed": s.completed,
            "failed": s.failed,
            "paused": s.paused,
        }
        for s in stats
    }
    stopping = bool(supervisor.signals)
    rows = []
    for slot in supervisor.slots:
        proc = slot.proc  # once: the supervisor's thread may reap it meanwhile
        rows.append(
            [
                str(slot.index),
                str(proc.pid) if proc is not None else "",
                slot.state(stopping, now),
                str(max(slot.starts - 1, 0)),
            ]
        )
    # the rows that fit under the counts (a terminal shorter than every worker's row would
    # crop the last ones, a restarting one among them): those not up first, then a summary
    room = max(height - len(stats) - 9, 2)
    if len(rows) > room:
        up = "stopping" if stopping else "up"
        shown_rows = sorted(sorted(range(len(rows)), key=lambda i: rows[i][2] == up)[: room - 1])
        hidden = {row[2] for i, row in enumerate(rows) if i not in shown_rows}
        more = f"{len(rows) - len(shown_rows)} more" + (
            f" {hidden.pop()}" if len(hidden) == 1 else ""
        )
        rows = [rows[i] for i in shown_rows] + [["…", "", more, ""]]
    cols = [
        Column("worker", "key"),
        Column("pid", "num"),
        Column("state", "key"),
        Column("restarts", "num"),
    ]
    workers = fit_table(cols, rows, width)
    rate = "throughput, last minute: " + ", ".join(
        f"{shorts.get(s.queue, s.queue)} {s.completed_last_minute} done"
        + (f" {s.failed_last_minute} failed" if s.failed_last_minute else "")
        for s in stats
    )
    status = "stopping: waiting for the workers" if stopping else ""
    view = render_view(counts, shorts, JobFeed(), width, height - len(rows) - 4, status)
    return Group(view, Text(rate, overflow="fold"), workers)


class ParentServices:
    """Serve and show (see the module doc) in a thread until :meth:`stop`."""

    def __init__(
        self,
        console: Console,
        resolved: Settings,
        host: PluginHost,
        specs: list[QueueSpec],
        serving: ParentServing,
    ) -> None:
        self.console = console
        self.resolved = resolved
        self.host = host
        self.specs = specs
        self.serving = serving
        self.supervisor: Supervisor | None = None
        self.failure: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="polyjobs-parent", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self, supervisor: Supervisor) -> None:
        """Open the backend, bind the board and metrics; raise what failed (a port taken)."""
        self.supervisor = supervisor
        self._thread.start()
        self._ready.wait()
        if self.failure is not None:
            self._thread.join()
            raise self.failure

    def stop(self) -> None:
        """Draw the view a last time and stop serving."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self.failure = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from polyjobs.cli.board import start_board
        from polyjobs.cli.metrics import start_metrics
        from polyjobs.plugins import open_backend

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        names = [s.name for s in self.specs]
        tasks: list[asyncio.Task[None]] = []
        async with open_backend(self.resolved.backend_url, self.host) as backend:
            try:
                if self.serving.board is not None:
                    registered = self.host.queue_specs()
                    tasks.append(
                        await start_board(
                            self.console,
                            self.resolved,
                            registered,
                            backend,
                            *self.serving.board,
                            listings=self.host.listings(),
                        )
                    )
                if self.serving.metrics is not None:
                    tasks.append(
                        await start_metrics(
                            self.console, backend, names, None, *self.serving.metrics
                        )
                    )
                self._ready.set()
                if self.serving.live:
                    await self._show(backend, names)
                else:
                    await self._stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _show(self, backend: Any, names: list[str]) -> None:
        from rich.live import Live

        from polyjobs.stats import queue_stats

        assert self._stop is not None and self.supervisor is not None
        out = self.console.out
        shorts = {s.name: s.short_name for s in self.specs if s.short_name}
        live = Live(console=out, auto_refresh=False, transient=False, vertical_overflow="crop")
        last: list[QueueStats] = []

        async def draw() -> None:
            """A failed read keeps the last numbers; a failed redraw never stops the view."""
            nonlocal last
            assert self.supervisor is not None
            try:
                last = await queue_stats(backend, names)
            except Exception as exc:
                log.debug("parent view: reading the backend failed: %s", redact_text(str(exc)))
            try:
                view = render_parent(
                    last, shorts, self.supervisor, out.width, out.height, time.monotonic()
                )
                live.update(view, refresh=True)
            except Exception as exc:
                log.debug("parent view: redraw failed: %s", exc)

        with live:
            self.console.live_console = out
            try:
                while not self._stop.is_set():
                    await draw()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), REFRESH)
                await draw()
            finally:
                self.console.live_console = None
