"""WhaleDetector: recompute wallet statistics in batches and flag whales."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from polyjobs.polymarket.config import WhaleThresholds
from polyjobs.polymarket.models import WalletStats
from polyjobs.polymarket.store import Store

log = logging.getLogger(__name__)

WATERMARK_KEY = "whale-updates"
DAY = 86_400.0
ProgressCallback = Callable[[dict[str, int]], Awaitable[None]]


def whale_reasons(stats: WalletStats, limits: WhaleThresholds) -> list[str]:
    """Why ``stats`` makes a whale (empty: not a whale)."""
    reasons = []
    if stats.total_volume >= limits.min_volume:
        reasons.append(f"totalVolume>={limits.min_volume:g}")
    if stats.volume_30d >= limits.min_volume_30d:
        reasons.append(f"volume30d>={limits.min_volume_30d:g}")
    if stats.max_trade >= limits.min_trade:
        reasons.append(f"maxTrade>={limits.min_trade:g}")
    return reasons


@dataclass(frozen=True, slots=True)
class WhaleUpdateResult:
    wallets_updated: int
    whales: int
    errors: int
    duration: float
    batches: int

    def to_json(self) -> dict[str, Any]:
        return {
            "walletsUpdated": self.wallets_updated,
            "whales": self.whales,
            "errors": self.errors,
            "duration": round(self.duration, 3),
            "batches": self.batches,
        }


class WhaleDetector:
    """Recomputes the statistics of wallets with trades ingested since the last run.

    The watermark (``job_state`` key ``whale-updates``) moves to the run's start time only
    when every batch succeeded, so a failed run recomputes the same wallets next time
    (the update is idempotent).
    """

    def __init__(self, store: Store, thresholds: WhaleThresholds) -> None:
        self.store = store
        self.thresholds = thresholds

    async def update(
        self,
        *,
        batch_size: int = 1000,
        full: bool = False,
        on_progress: ProgressCallback | None = None,
        now: float | None = None,
    ) -> WhaleUpdateResult:
        started = time.monotonic()
        run_start = time.time() if now is None else now
        state = await self.store.get_state(WATERMARK_KEY) or {}
        since = None if full else state.get("lastIngestedAt")
        updated = whales = errors = batches = 0
        after = ""
        while True:
            batch = await self.store.dirty_wallets(since, after, batch_size)
            if not batch:
                break
            after = batch[-1]
            batches += 1
            try:
                done, flagged = await self._update_batch(batch, run_start)
                updated += done
                whales += flagged
            except Exception:
                errors += len(batch)
                log.exception(
                    "whale update: batch of %d wallets after %s failed", len(batch), after
                )
            if on_progress is not None:
                await on_progress({"batches": batches, "walletsUpdated": updated, "errors": errors})
            if len(batch) < batch_size:
                break
        if errors == 0:
            await self.store.set_state(WATERMARK_KEY, {**state, "lastIngestedAt": run_start})
        return WhaleUpdateResult(updated, whales, errors, time.monotonic() - started, batches)

    async def _update_batch(self, batch: list[str], now: float) -> tuple[int, int]:
        computed = await self.store.compute_wallet_stats(batch, since_30d=now - 30 * DAY)
        previous = await self.store.get_wallets(batch)
        whales = 0
        for stats in computed:
            stats.whale_reasons = whale_reasons(stats, self.thresholds)
            stats.is_whale = bool(stats.whale_reasons)
            stats.stats_computed_at = now
            before = previous.get(stats.address)
            if stats.is_whale:
                whales += 1
                was = before is not None and before.is_whale
                stats.whale_since = before.whale_since if was and before else now
        await self.store.upsert_wallets(computed)
        return len(computed), whales
