"""AnomalyDetector: named, configurable signals on single trades, and the alerts they raise.

Each signal records its value and threshold so a flag can be audited later. The scores are
"worth a look", not trading advice: open-source trackers that audited their own signals found
no significant edge.

Three rules make the results independent of job timing:

- **every trade is checked, in trade order** (``(timestamp, trade_key)``): a batch sorts its
  trades, and the analysis of one trade first checks the unchecked trades of the same wallet
  and market ordered before it;
- **signals come from the store as of the trade** (:mod:`polyjobs.polymarket.history`): the
  wallet's trades before it and its market's 24 h volume up to it;
- **one alert per wallet and market per cooldown, in trade time**, decided by the store in
  one atomic step (:meth:`~polyjobs.polymarket.store.Store.raise_alert`), on every path.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from polyjobs.polymarket.config import AnomalyThresholds
from polyjobs.polymarket.history import AsOf, histories
from polyjobs.polymarket.models import Alert, Signal, Trade, WalletHistory, cursor_of
from polyjobs.polymarket.store import Store

log = logging.getLogger(__name__)

VERSION = "v2"
#: An alert's dedupe key is this prefix and the trade key: one alert per trade, across versions.
ALERT_KEY_PREFIX = "anomaly:v1:"
DISCLAIMER = "Worth a look, not trading advice: these signals have no proven edge."
DAY = 86_400.0
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
    wallet: WalletHistory | None = None,
    market_volume: float | None = None,
) -> list[Signal]:
    """The signals ``trade`` raises (pure). ``wallet`` is the wallet's history *before* this
    trade (None or empty: the first trade we have seen of it); ``market_volume`` the market's
    USDC volume over the 24 h up to and including this trade (None: unknown)."""
    usdc = trade.usdc_size
    found: list[Signal] = []
    if usdc >= limits.large_trade:
        found.append(Signal("large_trade", usdc, limits.large_trade, "notional USDC"))
    if usdc >= limits.fresh_min:
        fresh = _fresh_signal(trade, limits, wallet or WalletHistory())
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
    if market_volume is not None and market_volume - usdc > 0.005:
        share = usdc / market_volume
        if share >= limits.market_share:
            found.append(
                Signal("size_vs_market", round(share, 4), limits.market_share, "of 24h volume")
            )
    return found


def _fresh_signal(trade: Trade, limits: AnomalyThresholds, wallet: WalletHistory) -> Signal | None:
    """Fresh: among the wallet's first ``fresh_trades`` trades, or its first trade less than
    ``fresh_age`` before this one."""
    number = wallet.trade_count + 1  # this trade's rank among the wallet's trades
    if wallet.first_seen is None:
        return Signal("fresh_wallet", number, limits.fresh_trades, "first trade we have seen")
    if number <= limits.fresh_trades:
        return Signal("fresh_wallet", number, limits.fresh_trades, "trades so far")
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
    skipped: str | None = None  # not checked for signals (older than the age limit)
    alert_id: str | None = None
    raised: bool = False  # this check stored the alert (False: it existed already)
    suppressed: str | None = None  # why no alert was raised although signals fired
    cooldown_alert_id: str | None = None  # the alert whose cooldown held this one back
    wallet: WalletHistory | None = None
    market_volume: float | None = None

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
            "skipped": self.skipped,
            "suppressed": self.suppressed,
            "cooldownAlertId": self.cooldown_alert_id,
            "alertId": self.alert_id,
            "wallet": None if self.wallet is None else self.wallet.to_doc(),
            "marketVolume24h": self.market_volume,
            "version": VERSION,
        }


@dataclass(slots=True)
class BatchResult:
    """What checking a batch did. ``alerts``: trades that hold an alert (``raised`` of them
    stored by this batch); ``suppressed``: detections held back by a cooldown; ``skipped``:
    trades older than the age limit, marked checked without signals."""

    checked: int = 0
    detected: int = 0
    alerts: int = 0
    raised: int = 0
    suppressed: int = 0
    skipped: int = 0
    signals: Counter[str] = field(default_factory=Counter)  # of the alerts raised

    def add(self, detection: Detection) -> None:
        self.checked += 1
        self.detected += detection.detected
        self.alerts += detection.alert_id is not None
        self.raised += detection.raised
        self.suppressed += detection.suppressed is not None
        self.skipped += detection.skipped is not None
        if detection.raised:
            self.signals.update(s.name for s in detection.signals)

    def merge(self, other: BatchResult) -> None:
        self.checked += other.checked
        self.detected += other.detected
        self.alerts += other.alerts
        self.raised += other.raised
        self.suppressed += other.suppressed
        self.skipped += other.skipped
        self.signals.update(other.signals)

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "detected": self.detected,
            "alerts": self.alerts,
            "raised": self.raised,
            "suppressed": self.suppressed,
            "skipped": self.skipped,
            "signals": dict(sorted(self.signals.items())),
        }


class AnomalyDetector:
    """Checks trades and raises one alert per detection, at most one per wallet and market per
    cooldown (in trade time); each new alert is handed to ``enqueue_alert`` (e.g. adding an
    alerts job whose ``job_id`` is the alert id)."""

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

    async def check(self, trades: Sequence[Trade]) -> list[Detection]:
        """Check stored ``trades`` in trade order (each with its history as of that trade)
        and raise their alerts. Marks nothing: see :meth:`check_batch`."""
        ordered = sorted(trades, key=cursor_of)
        max_age = self.thresholds.max_age
        oldest = self.clock() - max_age if max_age > 0 else None
        fresh = [t for t in ordered if oldest is None or t.timestamp >= oldest]
        context = await histories(self.store, fresh)
        out = []
        for trade in ordered:
            if trade.trade_key not in context:
                out.append(Detection(trade.trade_key, skipped=f"older than {max_age:g}s"))
                continue
            out.append(await self._check_one(trade, context[trade.trade_key]))
        return out

    async def check_batch(self, trades: Sequence[Trade]) -> BatchResult:
        """:meth:`check` the trades, then mark them all checked in one bulk write."""
        result = BatchResult()
        if not trades:
            return result
        detections = await self.check(trades)
        for detection in detections:
            result.add(detection)
        await self.store.mark_checked(
            {d.trade_key: d.to_record() for d in detections}, at=self.clock()
        )
        return result

    async def _check_one(self, trade: Trade, context: AsOf) -> Detection:
        detection = Detection(
            trade.trade_key, wallet=context.wallet, market_volume=context.market_volume
        )
        if trade.price >= self.thresholds.max_price:
            detection.filtered = f"price>={self.thresholds.max_price:g}"
            return detection
        detection.signals = compute_signals(
            trade, self.thresholds, context.wallet, context.market_volume
        )
        if detection.signals:
            detection.score = score_of(detection.signals)
            await self._raise_alert(trade, detection)
        return detection

    async def _raise_alert(self, trade: Trade, detection: Detection) -> None:
        large = any(s.name == "large_trade" for s in detection.signals)
        alert = Alert(
            dedupe_key=ALERT_KEY_PREFIX + trade.trade_key,
            kind="anomaly",
            severity=severity_of(trade.usdc_size),
            trade_key=trade.trade_key,
            wallet=trade.proxy_wallet,
            condition_id=trade.condition_id,
            signals=detection.signals,
            score=detection.score,
            summary=alert_summary(trade),
            priority="HIGH" if large else "NORMAL",
            trade_time=trade.timestamp,
            created_at=self.clock(),
        )
        raised = await self.store.raise_alert(alert, self.thresholds.cooldown)
        if raised.outcome == "cooldown":
            detection.suppressed = "cooldown"
            detection.cooldown_alert_id = raised.alert_id
            return
        detection.alert_id = raised.alert_id
        detection.raised = raised.outcome == "inserted"
        if self.enqueue_alert is None:
            return
        if not detection.raised:  # raised before: enqueue again only if not delivered yet
            existing = await self.store.get_alert(raised.alert_id)
            if existing is None or existing.status in ("sent", "failed"):
                return
            alert = existing
        await self.enqueue_alert(alert)


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
