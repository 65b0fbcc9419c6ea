"""Run the whole pipeline once over a file of trades, to the end: ``polyjobs replay FILE``.

:func:`run_replay` ingests a JSONL file of Data API trade rows once (the trades keep their own
times; ``since``/``until`` pick a window), then lets the five queues run until everything is
done: the large trades' analyses, anomaly batches until no trade is left unchecked, one
whale update, and the delivery of every alert (to Discord when ``DISCORD_WEBHOOK_URL`` is
set, to the console otherwise, as with ``polyjobs start``). It returns a
:class:`ReplaySummary`.

The queues run in this process on the in-memory job backend, so no other worker takes part.
The trades go to a temporary store removed at the end (a replay never mixes with live data),
or to ``store_url`` to keep them (a backfill). Gamma is not called: its market data describes
markets now, not when the trades happened, and signals never use it.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from polyjobs.errors import InvalidArgumentError
from polyjobs.hookspecs import ResourceFactory
from polyjobs.plugins import open_backend
from polyjobs.polymarket.alerts import AlertSink
from polyjobs.polymarket.config import DomainConfig, load_config
from polyjobs.polymarket.replay import ReplaySource
from polyjobs.polymarket.store import Store
from polyjobs.processors.demo import until_idle
from polyjobs.processors.queues import (
    ALERTS,
    ANALYSIS,
    ANOMALY_BATCH,
    INGEST,
    QUEUE_SPECS,
    WHALE_UPDATES,
)
from polyjobs.processors.resources import ALERT_SINK, STORE, TRADE_SOURCE, resource_factories
from polyjobs.redact import redact_url
from polyjobs.runtime import QueueSpec, Runtime, RuntimeContext

PAGE = 5000  # trades per ingest job
MAX_BATCHES = 100_000
MAX_ALERTS = 10_000_000


def parse_time(text: str, what: str = "time") -> float:
    """Epoch seconds from ``1767484800``, ``2026-01-04`` or ``2026-01-04T12:30[:00][+02:00]``
    (UTC unless an offset is given).

    Raises:
        InvalidArgumentError: one line naming ``what`` and the value.
    """
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgumentError(
            f"{what} {text!r} is not a time (use 2026-01-04, 2026-01-04T12:30 or epoch seconds)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """What to replay: ``path``, the window ``[since, until)`` (epoch seconds, None: open),
    and the store to keep the result in (None: a temporary one)."""

    path: Path
    since: float | None = None
    until: float | None = None
    store_url: str | None = None
    page: int = PAGE


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did. ``alerts`` are the alerts raised by this run (by signal in
    ``alerts_by_signal``), ``delivered`` of them sent to ``sink``."""

    file: str
    store: str
    sink: str
    rows: int = 0  # trade rows of the file inside the window
    outside: int = 0  # rows outside the window
    unreadable: int = 0  # lines that are not trade rows
    stored: int = 0  # trades new to the store
    analysed: int = 0  # large trades sent to the analysis queue
    checked: int = 0
    detected: int = 0
    suppressed: int = 0  # detected, held back by the cooldown
    skipped: int = 0  # older than POLYJOBS_ANOMALY_MAX_AGE
    alerts: int = 0
    alerts_by_signal: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    wallets: int = 0
    batches: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The summary for people, a few lines."""
        window = f" ({self.outside} outside the window)" if self.outside else ""
        bad = f", {self.unreadable} unreadable line(s) skipped" if self.unreadable else ""
        lines = [
            f"replay: {self.file}: {self.rows} trades{window}{bad}; {self.stored} new in the store"
        ]
        if not self.rows:
            lines.append("replay: nothing to check: the file holds no trade in the window")
        lines.append(
            f"replay: {self.checked} checked ({self.analysed} by analysis, the rest in"
            f" {self.batches} anomaly batch(es)): {self.detected} detected, {self.alerts}"
            f" alerts, {self.suppressed} held back by the cooldown, {self.skipped} skipped as"
            " too old"
        )
        if self.alerts_by_signal:
            by = ", ".join(f"{k} {v}" for k, v in sorted(self.alerts_by_signal.items()))
            lines.append(f"replay: alerts by signal: {by}")
        lines.append(
            f"replay: {self.delivered} of {self.alerts} alerts delivered to {self.sink};"
            f" {self.wallets} wallets updated; {self.seconds:.2f}s; store: {self.store}"
        )
        return lines


def replay_specs(config: DomainConfig) -> list[QueueSpec]:
    """The five queues without schedules; alerts to the console need no rate limit."""
    if config.discord_webhook_url is not None:
        return list(QUEUE_SPECS)
    return [s.with_changes(rate_limit=None) if s.name == ALERTS.name else s for s in QUEUE_SPECS]


async def run_replay(
    request: ReplayRequest,
    settings: Mapping[str, Any],
    *,
    report: Callable[[str], None] | None = None,
    sink: AlertSink | None = None,
) -> ReplaySummary:
    """Replay ``request.path`` through the pipeline to the end (see the module docstring).

    ``settings`` are the resolved settings (thresholds, Discord webhook, ...); ``report``
    gets progress lines; ``sink`` replaces the configured alert destination.

    Raises:
        ConfigError: an unreadable file or a bad setting.
        InvalidArgumentError: ``since`` not before ``until``.
    """
    if request.since is not None and request.until is not None and request.since >= request.until:
        raise InvalidArgumentError("--since must be before --until")
    with TemporaryDirectory(prefix="polyjobs-replay-") as tmp:
        url = request.store_url or f"sqlite:///{Path(tmp) / 'polymarket.db'}"
        merged = {**settings, "POLYJOBS_STORE": url, "POLYJOBS_GAMMA_ENABLED": "false"}
        config = load_config(merged)
        source = ReplaySource(
            request.path,
            0,
            keep_times=True,
            since=request.since,
            until=request.until,
            page=request.page,
            run=uuid.uuid4().hex,
        )
        rows = await source.load()
        summary = ReplaySummary(
            file=str(request.path),
            store=redact_url(url) if request.store_url else "temporary (removed)",
            sink=_sink_name(config, sink),
            rows=len(rows),
            outside=source.outside,
            unreadable=source.unreadable,
        )
        async with open_backend("memory://") as backend:
            runtime = Runtime(
                replay_specs(config),
                backend,
                resources=_resources(source, sink),
                settings=merged,
                schedule=False,
            )
            await runtime.start()
            try:
                await _drive(runtime, summary, report or (lambda _line: None))
            finally:
                await runtime.stop()
    return summary


def _sink_name(config: DomainConfig, sink: AlertSink | None) -> str:
    if sink is not None:
        return sink.key
    return "Discord" if config.discord_webhook_url else "the console"


def _resources(source: ReplaySource, sink: AlertSink | None) -> dict[str, ResourceFactory]:
    @asynccontextmanager
    async def file_source(ctx: RuntimeContext) -> AsyncIterator[ReplaySource]:
        yield source

    @asynccontextmanager
    async def given_sink(ctx: RuntimeContext) -> AsyncIterator[AlertSink]:
        assert sink is not None
        yield sink

    factories: dict[str, ResourceFactory] = dict(resource_factories())
    factories[TRADE_SOURCE] = file_source
    if sink is not None:
        factories[ALERT_SINK] = given_sink
    return factories


async def _drive(runtime: Runtime, summary: ReplaySummary, say: Callable[[str], None]) -> None:
    started, wall = time.monotonic(), time.time()
    store: Store = runtime.context[STORE]
    read = pages = 0
    while True:  # a page of the file per ingest job; large trades start their analysis at once
        result = await _run(runtime, INGEST, f"ingest-{pages}")
        pages += 1
        read += int(result["received"]) - int(result["skipped"])
        summary.stored += int(result["stored"])
        summary.analysed += int(result["analysis"])
        if result["exhausted"]:
            break
        say(f"replay: read {read} of {summary.rows} trades")
    say(f"replay: {summary.rows} trades read, {summary.analysed} large ones sent to analysis")
    await until_idle(runtime, [ANALYSIS.name])
    while summary.batches < MAX_BATCHES:  # anomaly batches until nothing is left unchecked
        batch = await _run(runtime, ANOMALY_BATCH, f"batch-{summary.batches}")
        summary.batches += 1
        if batch["checked"]:
            say(
                f"replay: anomaly batch {summary.batches}: {batch['checked']} checked,"
                f" {batch['remaining']} left"
            )
        if batch["remaining"] == 0 or batch["checked"] == 0:
            break
    summary.wallets = int((await _run(runtime, WHALE_UPDATES, "whales"))["walletsUpdated"])
    await until_idle(runtime)  # every alert delivered (or failed for good)
    counts = await store.checked_counts(wall)
    summary.checked, summary.detected = counts["checked"], counts["detected"]
    summary.suppressed, summary.skipped = counts["suppressed"], counts["skipped"]
    alerts = await store.list_alerts(created_since=wall, limit=MAX_ALERTS)
    summary.alerts = len(alerts)
    summary.alerts_by_signal = dict(Counter(s.name for a in alerts for s in a.signals))
    summary.delivered = sum(1 for a in alerts if a.status == "sent")
    summary.seconds = round(time.monotonic() - started, 2)


async def _run(runtime: Runtime, spec: QueueSpec, job_id: str) -> Any:
    job = await runtime.context.queue(spec.name).add("replay", None, job_id=job_id)
    return await job.wait()
