"""Prometheus metrics of every queue, read through the library API.

A custom collector in a ``CollectorRegistry`` of each app (never the module-global registry):
the ``/metrics`` route first reads the backend (async), then renders what it read.

- the gauges of what the backend holds, shared with ``polyjobs start --metrics-port``
  (:mod:`polyjobs.prometheus`): ``polyjobs_jobs{queue,state}``, ``polyjobs_queue_paused``,
  ``polyjobs_workers_online``, ``polyjobs_oldest_waiting_job_age_seconds`` (``{queue}``)
- ``polyjobs_jobs_completed_total{queue}``, ``polyjobs_jobs_failed_total{queue}``: finished jobs
  this board has seen (counters; it looks at the retained finished jobs at every sample and every
  scrape, so jobs trimmed by retention before it looked are not counted)
- ``polyjobs_job_processing_seconds{queue,state}``: ``finished_on - processed_on`` of those jobs
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from polyjobs.prometheus import QueueSnapshot, queue_families, read_queues
from polyjobs.queue import Queue

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.board.service import BoardService

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
FINISHED = ("completed", "failed")
PAGE = 200
SCAN_CAP = 2000


@dataclass(slots=True)
class _Seen:
    """What has been counted of one queue's finished jobs in one state."""

    watermark: float = 0.0
    at_watermark: set[str] = field(default_factory=set)
    total: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    seconds: float = 0.0

    def add(self, job_id: str, finished_on: float, duration: float | None) -> None:
        self.total += 1
        if duration is not None:
            self.buckets[bisect.bisect_left(BUCKETS, duration)] += 1
            self.seconds += duration
        if finished_on > self.watermark:
            self.watermark, self.at_watermark = finished_on, {job_id}
        elif finished_on == self.watermark:
            self.at_watermark.add(job_id)


class FinishedJobs:
    """Counts the finished jobs of each queue once, and their processing times."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.seen: dict[tuple[str, str], _Seen] = {}
        self._lock = asyncio.Lock()

    async def observe(self, names: Iterable[str]) -> None:
        """Count the jobs that finished since the last look (newest first, stop at the mark)."""
        async with self._lock:
            for name in names:
                queue = Queue(name, self.backend)
                for state in FINISHED:
                    await self._observe(queue, state)

    async def _observe(self, queue: Queue, state: str) -> None:
        seen = self.seen.setdefault((queue.name, state), _Seen())
        mark, at_mark = seen.watermark, set(seen.at_watermark)
        fresh = []
        for start in range(0, SCAN_CAP, PAGE):
            jobs = await queue.jobs(state, start, start + PAGE - 1)
            for job in jobs:
                finished = job.finished_on or 0.0
                if finished < mark or (finished == mark and job.id in at_mark):
                    break
                fresh.append(job)
            else:
                if len(jobs) == PAGE:
                    continue
            break
        for job in reversed(fresh):
            duration = None
            if job.processed_on is not None and job.finished_on is not None:
                duration = max(job.finished_on - job.processed_on, 0.0)
            seen.add(job.id, job.finished_on or 0.0, duration)

    def histogram(self, queue: str, state: str) -> tuple[list[tuple[str, float]], float]:
        seen = self.seen.get((queue, state)) or _Seen()
        cumulative, out = 0, []
        for bound, count in zip((*BUCKETS, float("inf")), seen.buckets, strict=True):
            cumulative += count
            out.append(("+Inf" if bound == float("inf") else str(bound), float(cumulative)))
        return out, seen.seconds

    def total(self, queue: str, state: str) -> int:
        seen = self.seen.get((queue, state))
        return 0 if seen is None else seen.total


class BoardCollector(Collector):
    """Renders the last snapshot taken by ``refresh``."""

    def __init__(self, finished: FinishedJobs) -> None:
        self.finished = finished
        self.stats: list[QueueSnapshot] = []

    def collect(self) -> Iterator[Metric]:
        totals = {
            state: CounterMetricFamily(
                f"polyjobs_jobs_{state}", f"Jobs seen {state} by this board.", labels=["queue"]
            )
            for state in FINISHED
        }
        seconds = HistogramMetricFamily(
            "polyjobs_job_processing_seconds",
            "Processing time of finished jobs (finished_on - processed_on).",
            labels=["queue", "state"],
        )
        for s in self.stats:
            for state in FINISHED:
                totals[state].add_metric([s.queue], self.finished.total(s.queue, state))
                buckets, total = self.finished.histogram(s.queue, state)
                seconds.add_metric([s.queue, state], buckets, total)
        yield from (*queue_families(self.stats), *totals.values(), seconds)


class Metrics:
    """One app's registry, collector and the lock that keeps a scrape's snapshot whole."""

    def __init__(self, service: BoardService, finished: FinishedJobs) -> None:
        self.service = service
        self.finished = finished
        self.collector = BoardCollector(finished)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._lock = asyncio.Lock()

    async def render(self) -> bytes:
        """Read every queue now and render the text exposition format."""
        async with self._lock:
            names = await self.service.queue_names()
            await self.finished.observe(names)
            self.collector.stats = await read_queues(self.service.backend, names)
            return generate_latest(self.registry)
