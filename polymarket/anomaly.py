"""AnomalyDetector: named, configurable signals on single trades, and the alerts they raise.

Each signal records its value and threshold so a flag can be audited later. The scores are
"worth a look", not trading advice: open-source trackers that audited their own signals found
no significant edge.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from polyjobs.polymarket.config import AnomalyThresholds
from polyjobs.polymarket.models import Alert, Signal, Trade, WalletStats
from polyjobs.polymarket.store import Store

log = logging.getLogger(__name__)

VERSION = "v1"
DISCLAIMER = "Worth a look, not trading advice: these signals have no proven edge."
DAY = 86_400.0
Priority = Literal["NORMAL", "HIGH"]
EnqueueAlert = Callable[[Alert], Awaitable[None]]

#: How much each signal adds to the score: ``score = 1 - prod(1 - weight)``.
WEIGHTS = {
    "large_trade": 0.35,
    "fresh_wallet": 0.30,
    "long_shot": 0.25,
    "size_vs_wallet": 0.20,
    "size_vs_market": 0.20,
}
SEVERITY_TIERS = ((50_000.0, "critical"), (20_000.0, "high"), (5_000.0, "medium"))


def severity_of(notional: float) -> str:
    for floor, name in SEVERITY_TIERS:
        if notional >= floor:
            return name
    return "low"


def score_of(signals: Sequence[Signal]) -> float:
    return round(1.0 - math.prod(1.0 - WEIGHTS.get(s.name, 0.1) for s in signals), 4)


def compute_signals(
    trade: Trade,
    limits: AnomalyThresholds,
    wallet: WalletStats | None = None,
    market_volume: float | None = None,
) -> list[Signal]:
    """The signals ``trade`` raises (pure). ``wallet`` is its stored statistics (None: a wallet
    we have not seen yet, i.e. fresh); ``market_volume`` the market's recent USDC volume
    including this trade (None: unknown)."""
    usdc = trade.usdc_size
    found: list[Signal] = []
    if usdc >= limits.large_trade:
        found.append(Signal("large_trade", usdc, limits.large_trade, "notional USDC"))
    if usdc >= limits.fresh_min:
        fresh = _fresh_signal(trade, limits, wallet)
        if fresh is not None:
            found.append(fresh)
    if (
        trade.side == "BUY"
        and trade.price <= limits.long_shot_price
        and usdc >= limits.long_shot_min
    ):
        found.append(Signal("long_shot", trade.price, limits.long_shot_price, "BUY price"))
    if usdc < limits.min_notional:
        return found
    if wallet is not None and wallet.trade_count >= limits.wallet_min_trades and wallet.avg_trade:
        multiple = usdc / wallet.avg_trade
        if multiple >= limits.wallet_multiple:
            found.append(
                Signal("size_vs_wallet", round(multiple, 2), limits.wallet_multiple, "x avg trade")
            )
    if market_volume is not None and market_volume - usdc > 0:
        share = usdc / market_volume
        if share >= limits.market_share:
            found.append(
                Signal("size_vs_market", round(share, 4), limits.market_share, "of 24h volume")
            )
    return found


def _fresh_signal(
    trade: Trade, limits: AnomalyThresholds, wallet: WalletStats | None
) -> Signal | None:
    if wallet is None or wallet.first_seen is None:
        return Signal("fresh_wallet", 0, limits.fresh_trades, "first trade we have seen")
    if wallet.trade_count <= limits.fresh_trades:
        return Signal("fresh_wallet", wallet.trade_count, limits.fresh_trades, "trades so far")
    age = trade.timestamp - wallet.first_seen
    if age < limits.fresh_age:
        return Signal("fresh_wallet", round(age / 3600, 2), limits.fresh_age / 3600, "hours old")
    return None


@dataclass(slots=True)
class Detection:
    """The outcome of checking one trade."""

    trade_key: str
    signals: list[Signal] = field(default_factory=list)
    score: float = 0.0
    filtered: str | None = None  # a noise filter that skipped the trade
    alert_id: str | None = None
    suppressed: str | None = None  # why no alert was raised although signals fired

    @property
    def detected(self) -> bool:
        return bool(self.signals) and self.filtered is None

    def to_record(self) -> dict[str, Any]:
        """The ``anomaly`` record stored on the trade."""
        return {
            "flagged": self.detected,
            "score": self.score,
            "signals": [s.to_doc() for s in self.signals],
            "filtered": self.filtered,
            "suppressed": self.suppressed,
            "alertId": self.alert_id,
            "version": VERSION,
        }


@dataclass(frozen=True, slots=True)
class BatchResult:
    checked: int
    detected: int
    alerts: int

    def to_json(self) -> dict[str, int]:
        return {"checked": self.checked, "detected": self.detected, "alerts": self.alerts}


class AnomalyDetector:
    """Checks trades, writes one deduplicated alert per detection and hands it to
    ``enqueue_alert`` (e.g. adding an alerts job whose ``job_id`` is the alert id)."""

    def __init__(
        self,
        store: Store,
        thresholds: AnomalyThresholds,
        enqueue_alert: EnqueueAlert | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.thresholds = thresholds
        self.enqueue_alert = enqueue_alert
        self.clock = clock

    async def check(
        self,
        trade: Trade,
        priority: Priority = "NORMAL",
        *,
        wallet: WalletStats | None = None,
        market_volume: float | None = None,
    ) -> Detection:
        """Check one trade and raise its alert. ``HIGH`` priority (an explicit analysis)
        ignores the per-wallet-per-market cooldown."""
        detection = Detection(trade.trade_key)
        if trade.price >= self.thresholds.max_price:
            detection.filtered = f"price>={self.thresholds.max_price:g}"
            return detection
        detection.signals = compute_signals(trade, self.thresholds, wallet, market_volume)
        if not detection.signals:
            return detection
        detection.score = score_of(detection.signals)
        await self._raise_alert(trade, detection, priority)
        return detection

    async def _raise_alert(self, trade: Trade, detection: Detection, priority: Priority) -> None:
        now = self.clock()
        alert = Alert(
            dedupe_key=f"anomaly:{VERSION}:{trade.trade_key}",
            kind="anomaly",
            severity=severity_of(trade.usdc_size),
            trade_key=trade.trade_key,
            wallet=trade.proxy_wallet,
            condition_id=trade.condition_id,
            signals=detection.signals,
            score=detection.score,
            summary=alert_summary(trade),
            priority=priority,
            created_at=now,
        )
        existing = await self.store.get_alert(alert.id)
        if existing is None:
            cooldown = self.thresholds.cooldown
            if priority == "NORMAL" and cooldown > 0:
                if await self.store.recent_alert(alert.wallet, alert.condition_id, now - cooldown):
                    detection.suppressed = "cooldown"
                    return
            await self.store.insert_alert(alert)  # a concurrent insert of the same key is fine
        detection.alert_id = alert.id
        done = existing is not None and existing.status in ("sent", "failed")
        if self.enqueue_alert is not None and not done:
            await self.enqueue_alert(alert)

    async def check_batch(self, trades: Sequence[Trade]) -> BatchResult:
        """Check ``trades`` (loading wallets and market volumes once for the batch), then mark
        them all checked in one bulk write."""
        if not trades:
            return BatchResult(0, 0, 0)
        wallets = await self.store.get_wallets(sorted({t.proxy_wallet for t in trades}))
        newest = max(t.timestamp for t in trades)
        volumes = await self.store.market_volumes(
            sorted({t.condition_id for t in trades}), since=newest - DAY
        )
        results: dict[str, dict[str, Any] | None] = {}
        detected = alerts = 0
        for trade in trades:
            detection = await self.check(
                trade,
                wallet=wallets.get(trade.proxy_wallet),
                market_volume=volumes.get(trade.condition_id),
            )
            detected += detection.detected
            alerts += detection.alert_id is not None
            results[trade.trade_key] = detection.to_record()
        await self.store.mark_checked(results, at=self.clock())
        return BatchResult(len(trades), detected, alerts)


def alert_summary(trade: Trade) -> dict[str, Any]:
    """What the alert message shows about the trade (kept on the alert, so a retried delivery
    sends exactly the same message)."""
    return {
        "title": trade.title,
        "slug": trade.slug,
        "eventSlug": trade.event_slug,
        "side": trade.side,
        "outcome": trade.outcome,
        "price": trade.price,
        "size": trade.size,
        "usdcSize": round(trade.usdc_size, 2),
        "pseudonym": trade.pseudonym,
        "timestamp": trade.timestamp,
        "transactionHash": trade.transaction_hash,
        "note": DISCLAIMER,
    }
