"""Throughput history: ``queue_stats`` sampled periodically into a bounded ring buffer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyjobs.backend import metrics_of, minute_of
from polyjobs.errors import PolyjobsError
from polyjobs.stats import queue_stats

if TYPE_CHECKING:
    from polyjobs.board.metrics import FinishedJobs
    from polyjobs.board.service import BoardService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    """Jobs finished per minute before ``at``, per queue: ``{queue: (completed, failed)}``."""

    at: float
    rates: dict[str, tuple[int, int]]


class Sampler:
    """Samples every queue's throughput every ``interval`` seconds into a ring buffer.

    A rate is the number of finished jobs the board saw (``FinishedJobs``, which counts each
    retained finished job once) since the previous sample, per minute; so it is exact as long as
    retention keeps more jobs than finish in one interval. A queue's first sample, with nothing
    to compare with, takes ``queue_stats``' last-minute counts.
    """

    def __init__(
        self, service: BoardService, interval: float, size: int, finished: FinishedJobs
    ) -> None:
        self.service = service
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=size)
        self.finished = finished
        self._last: dict[str, tuple[float, int, int]] = {}

    async def sample(self) -> Sample:
        """Take one sample now (which also lets the metrics see newly finished jobs)."""
        names = await self.service.queue_names()
        await self.finished.observe(names)
        now = time.time()
        new = [name for name in names if name not in self._last]
        first = {
            s.queue: (s.completed_last_minute, s.failed_last_minute)
            for s in (await queue_stats(self.service.backend, new) if new else [])
        }
        rates = {}
        for name in names:
            done = self.finished.total(name, "completed")
            failed = self.finished.total(name, "failed")
            if name in first:
                rates[name] = first[name]
            else:
                at, done_before, failed_before = self._last[name]
                per_minute = 60.0 / max(now - at, 1e-3)
                rates[name] = (
                    round((done - done_before) * per_minute),
                    round((failed - failed_before) * per_minute),
                )
            self._last[name] = (now, done, failed)
        sample = Sample(now, rates)
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        """Sample until cancelled; a failing backend is logged and tried again next time."""
        while True:
            try:
                await self.sample()
            except PolyjobsError as exc:
                log.warning("board: throughput sample failed: %s", exc)
            except Exception:  # a bug must not end the sampling of a long-running board
                log.exception("board: throughput sample failed")
            await asyncio.sleep(self.interval)

    def history(self, queue: str) -> list[tuple[float, int, int]]:
        """``[(at, completed, failed), ...]`` for one queue, oldest first."""
        return [(s.at, *s.rates[queue]) for s in self.samples if queue in s.rates]

    async def points(self, queue: str, minutes: int = 60) -> list[tuple[float, int, int]]:
        """The chart of one queue: on a backend that keeps metrics, jobs finished in each of the
        last ``minutes`` minutes as stored (right after a restart, for every worker); else
        this board's own samples (:meth:`history`)."""
        stored = metrics_of(self.service.backend)
        if stored is None:
            return self.history(queue)
        now = minute_of(time.time())
        first = now - 60 * (minutes - 1)
        counted = {m.minute: m for m in await stored.get_metrics(queue, first)}
        points = []
        for i in range(minutes):
            at = first + 60 * i
            m = counted.get(at)
            points.append((at, m.completed if m else 0, m.failed if m else 0))
        return points

    def to_json(self) -> dict[str, Any]:
        queues: dict[str, list[dict[str, float]]] = {}
        for s in self.samples:
            for name, (done, failed) in s.rates.items():
                queues.setdefault(name, []).append(
                    {"at": s.at, "completed": done, "failed": failed}
                )
        return {"interval": self.interval, "size": self.samples.maxlen, "queues": queues}


def sparkline(points: list[tuple[float, int, int]], width: int = 160, height: int = 36) -> str:
    """A small inline SVG of completed (and failed) jobs per minute; only numbers go in it."""
    if not points:
        return (
            f'<svg class="spark" width="{width}" height="{height}" role="img" '
            'aria-label="no samples yet"></svg>'
        )
    top = max(max(p[1], p[2]) for p in points) or 1
    span = (points[-1][0] - points[0][0]) or 1.0

    def path(index: int) -> str:
        coords = []
        for p in points:
            x = (p[0] - points[0][0]) / span * (width - 2) + 1
            y = height - 2 - p[index] / top * (height - 4)
            coords.append(f"{x:.1f},{y:.1f}")
        if len(points) == 1:  # one sample so far: a level line
            coords.append(f"{width - 1}.0,{coords[0].split(',')[1]}")
        return " ".join(coords)

    last = points[-1]
    label = f"{last[1]} completed and {last[2]} failed in the last minute; peak {top}/min"
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>'
        f'<polyline fill="none" stroke="#2f855a" stroke-width="1.5" points="{path(1)}"/>'
        f'<polyline fill="none" stroke="#c53030" stroke-width="1.5" points="{path(2)}"/>'
        "</svg>"
    )
