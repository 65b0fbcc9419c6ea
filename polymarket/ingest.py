"""The ingest job: polling trades in from a trade source (the Data API or a replayed file),
a watermark in the store, idempotent writes, and the real-time path for large trades.

:func:`poll_once` is what the ``polymarket-ingest`` job does: read what the source has since
the watermark, store it (a trade already stored is not stored again), hand every trade at or
above ``min_analysis`` USDC that is not anomaly-checked yet to ``enqueue_analysis`` (the
analysis queue, whose job id derives from the trade key, so a page read twice never enqueues
twice), then move the watermark. A crash before the watermark moves re-reads the same trades
next time; that is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from polyjobs.polymarket.data_api import DataApiClient
from polyjobs.polymarket.models import Trade
from polyjobs.polymarket.rows import parse_trades
from polyjobs.polymarket.store import Store

EnqueueAnalysis = Callable[[Trade], Awaitable[None]]


@dataclass(slots=True)
class SourceBatch:
    """What a source gave for one poll, and the state to store once it is ingested."""

    trades: list[Trade]
    state: dict[str, Any]
    skipped: int = 0
    requests: int = 0
    exhausted: bool = True  # nothing more is due right now (a replay: the file is done)
    extra: dict[str, Any] = field(default_factory=dict)


class TradeSource(Protocol):
    """Where trades come from. ``name`` keys the watermark (``ingest:<name>`` in job state)."""

    name: str

    async def read(self, state: Mapping[str, Any] | None, now: float) -> SourceBatch:
        """The trades due since ``state`` (None: the first poll) at wall time ``now``."""
        ...


class DataApiSource:
    """Polls ``GET /trades`` from the watermark (minus ``overlap`` seconds, for rows that
    reach the API late) up to now; the first poll reads ``backfill`` seconds back."""

    name = "data-api"

    def __init__(self, client: DataApiClient, *, backfill: float, overlap: float) -> None:
        self.client = client
        self.backfill = backfill
        self.overlap = overlap

    async def read(self, state: Mapping[str, Any] | None, now: float) -> SourceBatch:
        last = None if state is None else state.get("end")
        start = now - self.backfill if last is None else float(last) - self.overlap
        end = int(now)
        result = await self.client.trades(max(0.0, start), end)
        return SourceBatch(
            result.trades,
            {"end": end},
            skipped=result.skipped,
            requests=result.requests,
            extra={"windows": result.windows, "truncated": result.truncated},
        )


@dataclass(frozen=True, slots=True)
class IngestResult:
    source: str
    received: int
    stored: int
    skipped: int
    analysis: int
    requests: int
    exhausted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "received": self.received,
            "stored": self.stored,
            "skipped": self.skipped,
            "analysis": self.analysis,
            "requests": self.requests,
            "exhausted": self.exhausted,
        }


async def poll_once(
    store: Store,
    source: TradeSource,
    *,
    min_analysis: float,
    enqueue_analysis: EnqueueAnalysis | None = None,
    now: float | None = None,
) -> IngestResult:
    """One poll: read, store, enqueue the large trades, move the watermark."""
    now = time.time() if now is None else now
    key = f"ingest:{source.name}"
    state = await store.get_state(key)
    batch = await source.read(state if isinstance(state, Mapping) else None, now)
    for trade in batch.trades:
        trade.ingested_at = now
    stored = await store.add_trades(batch.trades) if batch.trades else 0
    enqueued = 0
    large = [t.trade_key for t in batch.trades if t.usdc_size >= min_analysis]
    if enqueue_analysis is not None and large:
        kept = await store.get_trades(large)  # one read, not one per trade
        for trade_key in dict.fromkeys(large):
            stored_trade = kept.get(trade_key)
            if stored_trade is not None and not stored_trade.anomaly_checked:
                await enqueue_analysis(stored_trade)
                enqueued += 1
    await store.set_state(key, batch.state)
    return IngestResult(
        source.name,
        len(batch.trades) + batch.skipped,
        stored,
        batch.skipped,
        enqueued,
        batch.requests,
        batch.exhausted,
    )


async def ingest(store: Store, body: Any, *, now: float | None = None) -> dict[str, int]:
    """Store the trades of ``body``; a trade already stored is not stored again."""
    trades, skipped = parse_trades(body, ingested_at=time.time() if now is None else now)
    stored = await store.add_trades(trades)
    return {"received": len(trades) + skipped, "stored": stored, "skipped": skipped}
