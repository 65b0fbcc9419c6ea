"""AnalysisPipeline: one trade checked now (the real-time path for large trades), enriched
with Gamma market data for the record.

The check is the anomaly batch's check (:class:`~polyjobs.polymarket.anomaly.AnomalyDetector`):
signals from the store as of the trade, one alert per wallet and market per cooldown. To keep
trade order, the unchecked trades of the same wallet and market ordered before this one are
checked first, in the same call. Gamma's market data is shown in the analysis, never used
for signals (it describes the market now, not when the trade happened).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from polyjobs.polymarket.anomaly import VERSION, AnomalyDetector
from polyjobs.polymarket.gamma import GammaClient, GammaError
from polyjobs.polymarket.models import Trade, cursor_of
from polyjobs.polymarket.store import Store

log = logging.getLogger(__name__)

#: At most this many earlier unchecked trades of the same wallet and market are checked first.
EARLIER_LIMIT = 1000


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
        earlier = await self.store.unchecked_trades(
            None,
            EARLIER_LIMIT,
            wallet=trade.proxy_wallet,
            condition_id=trade.condition_id,
            until=cursor_of(trade),
        )
        batch = [t for t in earlier if t.trade_key != trade.trade_key] + [trade]
        detections = await self.detector.check(batch)
        detection = detections[-1]
        analysis = {
            "tradeKey": trade.trade_key,
            "score": detection.score,
            "detected": detection.detected,
            "signals": [s.to_doc() for s in detection.signals],
            "filtered": detection.filtered,
            "skipped": detection.skipped,
            "alertId": detection.alert_id,
            "raised": detection.raised,
            "suppressed": detection.suppressed,
            "cooldownAlertId": detection.cooldown_alert_id,
            "checkedBefore": trade.anomaly_checked,
            "earlierChecked": len(batch) - 1,
            "wallet": None if detection.wallet is None else detection.wallet.to_doc(),
            "marketVolume24h": detection.market_volume,
            "market": market,
            "degraded": degraded,
            "version": VERSION,
            "analyzedAt": self.clock(),
        }
        await self.store.set_analysis(trade.trade_key, analysis)
        await self.store.mark_checked(
            {d.trade_key: d.to_record() for d in detections}, at=self.clock()
        )
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
