"""AnalysisPipeline: one trade, enriched (Gamma market, wallet stats), checked at HIGH priority."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from polyjobs.polymarket.anomaly import DAY, VERSION, AnomalyDetector
from polyjobs.polymarket.gamma import GammaClient, GammaError
from polyjobs.polymarket.models import Trade
from polyjobs.polymarket.store import Store

log = logging.getLogger(__name__)


class AnalysisPipeline:
    """``await pipeline.process(trade_key)``: the stored analysis, or None for an unknown trade.

    A Gamma failure degrades the analysis (``degraded`` says why); it never fails it.
    """

    def __init__(
        self,
        store: Store,
        gamma: GammaClient | None,
        detector: AnomalyDetector,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.gamma = gamma
        self.detector = detector
        self.clock = clock

    async def process(self, trade_key: str) -> dict[str, Any] | None:
        trade = await self.store.get_trade(trade_key)
        if trade is None:
            return None
        degraded: list[str] = []
        market = await self._market(trade, degraded)
        wallet = (await self.store.get_wallets([trade.proxy_wallet])).get(trade.proxy_wallet)
        volume = market.get("volume24hr") if market else None
        if volume is None:
            volumes = await self.store.market_volumes([trade.condition_id], trade.timestamp - DAY)
            volume = volumes.get(trade.condition_id)
        detection = await self.detector.check(trade, "HIGH", wallet=wallet, market_volume=volume)
        analysis = {
            "tradeKey": trade.trade_key,
            "score": detection.score,
            "detected": detection.detected,
            "signals": [s.to_doc() for s in detection.signals],
            "filtered": detection.filtered,
            "alertId": detection.alert_id,
            "market": market,
            "wallet": None if wallet is None else wallet.to_doc(),
            "degraded": degraded,
            "version": VERSION,
            "analyzedAt": self.clock(),
        }
        await self.store.set_analysis(trade.trade_key, analysis)
        await self.store.mark_checked({trade.trade_key: detection.to_record()}, at=self.clock())
        return analysis

    async def _market(self, trade: Trade, degraded: list[str]) -> dict[str, Any] | None:
        if self.gamma is None:
            degraded.append("gamma: not configured")
            return None
        try:
            return await self.gamma.market(trade.condition_id)
        except GammaError as exc:
            log.warning("analysis of %s without market data: %s", trade.trade_key, exc)
            degraded.append(f"gamma: {exc}")
            return None
