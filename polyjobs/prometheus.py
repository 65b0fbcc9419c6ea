"""Prometheus metrics of polyjobs queues (needs ``prometheus-client``: the ``metrics`` extra).

Two sources, one exposition (names and the mapping to BullMQ's are in docs/metrics.md):

- what the backend holds now, read at every scrape (gauges, the same wherever they are read):
  ``polyjobs_jobs{queue,state}``, ``polyjobs_queue_paused{queue}``,
  ``polyjobs_workers_online{queue}``, ``polyjobs_oldest_waiting_job_age_seconds{queue}``,
  ``polyjobs_backend_up`` (0 when the last read failed) and, from the per-minute metrics the
  backend keeps (whichever process ran the jobs), ``polyjobs_jobs_finished_last_minute`` and
  ``polyjobs_jobs_finished_last_hour`` (``{queue,state}``, state completed or failed);
- what this process's workers did (:class:`JobMetrics`, a plugin fed by ``polyjobs_job_event``):
  ``polyjobs_jobs_completed_total``, ``polyjobs_jobs_failed_total``,
  ``polyjobs_jobs_retried_total``, ``polyjobs_rate_limit_holds_total`` (counters, ``{queue}``)
  and ``polyjobs_job_processing_seconds{queue,state}`` (histogram of finished jobs).

:class:`MetricsExporter` serves them over HTTP from any asyncio program (``polyjobs start
--metrics-port``); the board's ``/metrics`` renders the same gauges.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from polyjobs.backend import STATES
from polyjobs.hookspecs import hookimpl
from polyjobs.listen import listening_socket
from polyjobs.redact import redact_text

if TYPE_CHECKING:
    from polyjobs.backend import Backend

log = logging.getLogger(__name__)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
FINISHED = ("completed", "failed")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 10.0


@dataclass(slots=True)
class Histogram:
    """Observations in :data:`BUCKETS` (seconds), their count and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: ``[(le, count of observations <= le), ...]`` up to ``+Inf``."""
        running, out = 0, []
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else str(bound), float(running)))
        return out


# -- what the backend holds -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """One queue as read from the backend at one moment."""

    queue: str
    counts: Mapping[str, int]
    paused: bool
    workers: int
    oldest_waiting_age: float  # seconds the job next in line has waited; 0 when none waits
    #: from the per-minute metrics the backend keeps (every process's finishes; None on a
    #: backend without them): {"completed": n, "failed": n} in the last minute and hour
    last_minute: Mapping[str, int] | None = None
    last_hour: Mapping[str, int] | None = None


async def read_queues(backend: Backend, names: Iterable[str]) -> list[QueueSnapshot]:
    """Counts, pause flag, live workers and the head-of-line wait of each queue.

    The oldest waiting job is the one next in line (``waiting`` in fetch order): with one
    priority and no LIFO jobs it is the one that has waited longest. It waits since it was
    added, or since its delay ran out.
    """
    from polyjobs.backend import metrics_of
    from polyjobs.stats import _last_hour, _last_minute

    out = []
    stored = metrics_of(backend)
    for name in names:
        counts = await backend.counts(name)
        head = await backend.list_jobs(name, "waiting", 0, 0) if counts["waiting"] else []
        now = time.time()
        age = max(now - max(head[0].timestamp, head[0].run_at), 0.0) if head else 0.0
        minute = hour = None
        if stored is not None:
            minutes = await stored.get_metrics(name, now - 3600)
            done, failed = _last_minute(minutes, now)
            minute = {"completed": done, "failed": failed}
            in_hour = _last_hour(minutes, now)
            hour = {
                "completed": in_hour["completed_last_hour"],
                "failed": in_hour["failed_last_hour"],
            }
        out.append(
            QueueSnapshot(
                queue=name,
                counts=counts,
                paused=await backend.is_paused(name),
                workers=len(await backend.list_workers(name)),
                oldest_waiting_age=age,
                last_minute=minute,
                last_hour=hour,
            )
        )
    return out


def queue_families(snapshots: Sequence[QueueSnapshot]) -> list[Metric]:
    """The gauges of what the backend holds."""
    jobs = GaugeMetricFamily("polyjobs_jobs", "Jobs by queue and state.", labels=["queue", "state"])
    paused = GaugeMetricFamily(
        "polyjobs_queue_paused", "1 when the queue is paused.", labels=["queue"]
    )
    workers = GaugeMetricFamily(
        "polyjobs_workers_online", "Workers with a recent heartbeat.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "polyjobs_oldest_waiting_job_age_seconds",
        "Seconds the job next in line has been waiting (0: none waits).",
        labels=["queue"],
    )
    minute = GaugeMetricFamily(
        "polyjobs_jobs_finished_last_minute",
        "Jobs that ended in the last 60 s, by any process (the backend's stored metrics).",
        labels=["queue", "state"],
    )
    hour = GaugeMetricFamily(
        "polyjobs_jobs_finished_last_hour",
        "Jobs that ended in the last hour, by any process (the backend's stored metrics).",
        labels=["queue", "state"],
    )
    for s in snapshots:
        for state in STATES:
            jobs.add_metric([s.queue, state], s.counts.get(state, 0))
        paused.add_metric([s.queue], 1.0 if s.paused else 0.0)
        workers.add_metric([s.queue], s.workers)
        oldest.add_metric([s.queue], s.oldest_waiting_age)
        for family, stored in ((minute, s.last_minute), (hour, s.last_hour)):
            for ended, n in (stored or {}).items():
                family.add_metric([s.queue, ended], n)
    stored_families = [minute, hour] if any(s.last_minute is not None for s in snapshots) else []
    return [jobs, paused, workers, oldest, *stored_families]


# -- what this process did --------------------------------------------------------------------
class JobMetrics:
    """Counts what the workers of this process did, from their job events.

    Register it as a plugin (``PluginHost.load(extra=[metrics])``); every worker given that
    host reports here. Counters start at zero with the process, as Prometheus expects.
    """

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], int] = {}
        self.seconds: dict[tuple[str, str], Histogram] = {}

    @hookimpl
    def polyjobs_job_event(
        self, queue: str, event: str, job_id: str, payload: Mapping[str, Any]
    ) -> None:
        if event not in ("completed", "failed", "retrying", "held"):
            return
        key = (queue, event)
        self.totals[key] = self.totals.get(key, 0) + 1
        duration = payload.get("duration")
        if event in FINISHED and isinstance(duration, int | float):
            self.seconds.setdefault(key, Histogram()).observe(float(duration))

    def total(self, queue: str, event: str) -> int:
        return self.totals.get((queue, event), 0)

    def queues(self) -> list[str]:
        return sorted({queue for queue, _ in self.totals})

    def families(self, names: Iterable[str]) -> list[Metric]:
        """Counters and the processing-time histogram of ``names`` and of every queue seen."""
        queues = sorted({*names, *self.queues()})
        counters = {
            event: CounterMetricFamily(f"polyjobs_jobs_{name}", help_text, labels=["queue"])
            for event, name, help_text in (
                ("completed", "completed", "Jobs this process completed."),
                ("failed", "failed", "Jobs this process failed (no attempts left)."),
                ("retrying", "retried", "Attempts this process ended with a retry."),
            )
        }
        holds = CounterMetricFamily(
            "polyjobs_rate_limit_holds",
            "Times a processor of this process held its whole queue (RateLimitError).",
            labels=["queue"],
        )
        seconds = HistogramMetricFamily(
            "polyjobs_job_processing_seconds",
            "Seconds from start to end of the jobs this process finished.",
            labels=["queue", "state"],
        )
        for queue in queues:
            for event, family in counters.items():
                family.add_metric([queue], self.total(queue, event))
            holds.add_metric([queue], self.total(queue, "held"))
            for state in FINISHED:
                hist = self.seconds.get((queue, state)) or Histogram()
                seconds.add_metric([queue, state], hist.cumulative(), hist.total)
        return [*counters.values(), holds, seconds]


# -- the exposition -----------------------------------------------------------------------------
class _Snapshot(Collector):
    """Yields whatever ``MetricsExporter.render`` put in it for this scrape."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class MetricsExporter:
    """The Prometheus exposition of some queues on one backend, and an HTTP server for it.

    ``names`` returns the queues to report (called at every scrape); ``jobs`` adds what this
    process's workers did. Each exporter has its own registry (never the global one).
    """

    def __init__(
        self,
        backend: Backend,
        names: Callable[[], Awaitable[Sequence[str]]],
        jobs: JobMetrics | None = None,
    ) -> None:
        self.backend = backend
        self.names = names
        self.jobs = jobs
        self._snapshot = _Snapshot()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._snapshot)
        self._lock = asyncio.Lock()

    async def render(self) -> bytes:
        """Read the backend now and render the text exposition format."""
        async with self._lock:
            up = GaugeMetricFamily(
                "polyjobs_backend_up", "1 when the last read of the backend worked."
            )
            names: Sequence[str] = []
            families: list[Metric] = []
            try:
                names = await self.names()
                families = queue_families(await read_queues(self.backend, names))
                up.add_metric([], 1.0)
            except Exception as exc:  # a scrape answers whatever happened to the backend
                log.warning("metrics: reading the backend failed: %s", redact_text(str(exc)))
                up.add_metric([], 0.0)
            if self.jobs is not None:
                families += self.jobs.families(names)
            self._snapshot.families = [up, *families]
            return generate_latest(self.registry)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 9464,
        *,
        sock: socket.socket | None = None,
        started: asyncio.Event | None = None,
    ) -> None:
        """Answer ``GET /metrics`` on ``host:port`` (or ``sock``) until cancelled."""
        listener = sock or bind(host, port)
        server = await asyncio.start_server(self._answer, sock=listener, limit=MAX_REQUEST_HEAD)
        try:
            async with server:
                if started is not None:
                    started.set()
                await server.serve_forever()
        finally:
            if sock is None:
                listener.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await _respond(writer, 405, b"only GET\n", "text/plain; charset=utf-8")
            elif path != "/metrics":
                await _respond(writer, 404, b"see /metrics\n", "text/plain; charset=utf-8")
            else:
                body = await self.render()
                await _respond(writer, 200, b"" if method == "HEAD" else body, CONTENT_TYPE)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # a client that sent no complete request gets no answer
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, kind: str) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); ``ConfigError`` when taken."""
    return listening_socket(host, port, "metrics", backlog=64)
