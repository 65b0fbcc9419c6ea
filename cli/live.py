"""The live view of ``polyjobs start`` on a terminal: one rich ``Live`` display that owns it.

What it shows, from top to bottom, within the terminal's height: the queues' counts (full
names when they fit, short ones otherwise), the jobs in progress, and a bounded panel of the
recent failures that ages out (:data:`FAILURE_TTL`). A failure reason too long for its two
lines is cut at a word and ends with the command that shows it whole. Log lines and alerts
print above the display through the same console; a resize redraws at once at the new size.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyjobs.cli.console import Column, Console, fit_table, fits, shown
from polyjobs.hookspecs import hookimpl

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from polyjobs.cli.logs import Events
    from polyjobs.runtime import Runtime

log = logging.getLogger(__name__)

FAILURE_TTL = 60.0  # seconds a failure stays in the panel
MAX_FAILURES = 5
REASON_LINES = 2
REFRESH = 1.0
COUNTS = ("waiting", "active", "delayed", "completed", "failed")
SHORT = {"waiting": "wait", "delayed": "delay", "completed": "done"}


@dataclass(frozen=True, slots=True)
class Failure:
    at: float
    queue: str
    job_id: str
    reason: str
    retrying: bool


REPORTED = ("completed", "failed", "retrying", "stalled")


class Reporter:
    """A plugin that turns job events into lines (text or JSON); quiet under a live view,
    which shows them itself."""

    def __init__(self, events: Events, live: bool, *, completed: bool = True) -> None:
        self.events = events
        self.live = live
        self.completed = completed  # False: a supervised worker's, which says only the rest

    @hookimpl
    def polyjobs_job_event(
        self, queue: str, event: str, job_id: str, payload: Mapping[str, Any]
    ) -> None:
        if self.live or event not in REPORTED or (event == "completed" and not self.completed):
            return
        self.events.job(event, queue, job_id, payload)


class JobFeed:
    """A plugin that keeps what the live view shows of job events: progress and failures."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.progress: dict[tuple[str, str], Any] = {}
        self.failures: deque[Failure] = deque(maxlen=50)
        self.finished = 0  # jobs completed or failed (for good or to be retried)

    @hookimpl
    def polyjobs_job_event(
        self, queue: str, event: str, job_id: str, payload: Mapping[str, Any]
    ) -> None:
        key = (queue, job_id)
        if event in ("completed", "failed", "retrying"):
            self.finished += 1
        if event == "progress":
            self.progress[key] = payload.get("progress")
            return
        self.progress.pop(key, None)
        if event in ("failed", "retrying"):
            reason = str(payload.get("failed_reason") or "no reason given")
            self.failures.append(Failure(self.clock(), queue, job_id, reason, event == "retrying"))

    def recent_failures(self) -> list[Failure]:
        """The failures of the last :data:`FAILURE_TTL` seconds, newest first."""
        now = self.clock()
        return [f for f in reversed(self.failures) if now - f.at <= FAILURE_TTL]


def cut_at_word(text: str, limit: int) -> tuple[str, bool]:
    """``text`` on one line, at most ``limit`` characters, cut after a whole word (a single
    word longer than that is cut); whether anything was left out."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat, False
    room = max(limit - 1, 1)
    head = flat[:room]
    if " " in head and flat[room] != " ":
        head = head.rsplit(" ", 1)[0]
    return head.rstrip() + "…", True


def _bar(progress: Any, width: int = 20) -> str:
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        filled = max(0, min(width, int(progress / 100 * width)))
        return "█" * filled + "░" * (width - filled) + f" {progress:.0f}%"
    return shown(progress)


def render_view(
    counts: Mapping[str, Mapping[str, Any]],
    shorts: Mapping[str, str],
    feed: JobFeed,
    width: int,
    height: int,
    status: str = "",
) -> RenderableType:
    """The whole view for a ``width`` x ``height`` terminal (one line is left free)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    table, used = _counts_table(counts, shorts, width)
    parts: list[Any] = [table]
    budget = height - 1 - used - (1 if status else 0)
    progress = list(feed.progress.items())
    failures = feed.recent_failures()
    fail_lines = min(len(failures), MAX_FAILURES) * (REASON_LINES + 1)
    show_progress = max(0, min(len(progress), budget - min(fail_lines + 2, budget // 2)))
    for (queue, job_id), value in progress[:show_progress]:
        name = shorts.get(queue, queue)
        line = Text(f"↳ {shown(name)} {shown(job_id)} ", overflow="fold")
        line.append(_bar(value))
        parts.append(line)
    if len(progress) > show_progress:
        parts.append(Text(f"↳ … {len(progress) - show_progress} more in progress"))
        show_progress += 1
    budget -= show_progress
    if failures:
        parts.append(_failure_panel(failures, shorts, width, budget, Panel, Text))
    if status:
        parts.append(Text(status, style="bold"))
    return Group(*parts)


def _counts_table(
    counts: Mapping[str, Mapping[str, Any]], shorts: Mapping[str, str], width: int
) -> tuple[Any, int]:
    rows = [
        [name, *(c.get(k, 0) for k in COUNTS), "yes" if c.get("paused") else ""]
        for name, c in counts.items()
    ]
    cols = [Column("queue", "key"), *(Column(k, "num") for k in COUNTS), Column("paused", "num")]
    if not fits(cols, rows, width):
        cols = [
            Column("queue", "key"),
            *(Column(SHORT.get(k, k), "num") for k in COUNTS),
            Column("paused", "num"),
        ]
        rows = [[shorts.get(r[0], r[0]), *r[1:]] for r in rows]
    return fit_table(cols, rows, width), len(rows) + 2


def _failure_panel(
    failures: list[Failure],
    shorts: Mapping[str, str],
    width: int,
    budget: int,
    panel: Any,
    text: Any,
) -> Any:
    """Recent failures, newest first, in at most ``budget`` lines (two for the border)."""
    from rich.console import Console as RichConsole

    inner = max(width - 4, 20)
    room = budget - 2
    measure = RichConsole(width=inner, file=io.StringIO())
    lines: list[Any] = []
    shown_count = 0
    for failure in failures[:MAX_FAILURES]:
        name = shorts.get(failure.queue, failure.queue)
        head = (
            f"{time.strftime('%H:%M:%S', time.localtime(failure.at))} "
            f"{shown(name)} {shown(failure.job_id)}"
            f"{' (retrying)' if failure.retrying else ''}: "
        )
        whole = f"polyjobs jobs show {shown(name)} {shown(failure.job_id)}"
        reason, cut = cut_at_word(shown(failure.reason), inner * REASON_LINES - len(head))
        if cut:
            reason, _ = cut_at_word(
                shown(failure.reason), inner * REASON_LINES - len(head) - len(whole) - 8
            )
            reason += f" (see: {whole})"
        entry = text(head, style="red", overflow="fold")
        entry.append(reason, style="")
        needed = len(entry.wrap(measure, inner))
        if needed > room - len(lines):
            break
        lines.append(entry)
        lines.extend([None] * (needed - 1))
        shown_count += 1
    entries = [line for line in lines if line is not None]
    more = len(failures) - shown_count
    title = f"failures in the last {FAILURE_TTL:g}s"
    if more > 0:
        title += f" ({more} more: polyjobs jobs list QUEUE --state failed)"
    from rich.console import Group

    if not entries:
        return text(f"✗ {len(failures)} {title}", style="red")
    return panel(Group(*entries), title=title, title_align="left", border_style="red")


class LiveView:
    """Runs the live display while ``go()`` runs; the console prints above it meanwhile."""

    def __init__(
        self, console: Console, runtime: Runtime, feed: JobFeed, shorts: Mapping[str, str]
    ) -> None:
        self.console = console
        self.runtime = runtime
        self.feed = feed
        self.shorts = shorts
        self.status = ""
        self._redraw = asyncio.Event()

    async def counts(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, queue in self.runtime.queues.items():
            if name in self.runtime.specs:
                out[name] = await queue.counts()
        return out

    async def run(self, go: Callable[[], Awaitable[Any]]) -> None:
        from rich.live import Live

        out = self.console.out
        live = Live(console=out, auto_refresh=False, transient=False, vertical_overflow="crop")
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGWINCH, self._redraw.set)
        with live:
            self.console.live_console = out
            task = asyncio.create_task(self._refresh(live))
            try:
                await go()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                with contextlib.suppress(Exception):
                    live.update(await self._render(), refresh=True)
                self.console.live_console = None
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.remove_signal_handler(signal.SIGWINCH)

    async def _render(self) -> RenderableType:
        out = self.console.out
        return render_view(
            await self.counts(), self.shorts, self.feed, out.width, out.height, self.status
        )

    async def _refresh(self, live: Live) -> None:
        """Redraw every second and at once on a resize; a failing redraw never stops the
        workers."""
        width = self.console.out.width
        while True:
            try:
                now_width = self.console.out.width
                if now_width < width:
                    _forget_wider_render(live, width, now_width)
                width = now_width
                live.update(await self._render(), refresh=True)
            except Exception as exc:
                log.debug("live view redraw failed: %s", exc)
            self._redraw.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._redraw.wait(), REFRESH)


def _forget_wider_render(live: Live, old_width: int, new_width: int) -> None:
    """After the terminal got narrower, the last render's lines (padded to ``old_width``)
    were re-wrapped by the terminal onto more rows: clear that many, not the old count."""
    render = getattr(live, "_live_render", None)
    shape = getattr(render, "_shape", None)
    if render is None or shape is None:
        return
    _, rows = shape
    render._shape = (new_width, rows * math.ceil(old_width / max(new_width, 1)))
