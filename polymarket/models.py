"""The domain's records: a trade, a wallet's statistics, an alert (an outbox entry).

Plain dataclasses with snake_case attributes; ``to_doc()`` gives the stored, JSON-ready form
with the Data API's camelCase names, ``from_doc()`` reads it back. Times are epoch seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from polyjobs.errors import InvalidArgumentError

Side = Literal["BUY", "SELL"]
AlertStatus = Literal["pending", "sending", "retry", "sent", "failed"]
ALERT_STATUSES: tuple[AlertStatus, ...] = ("pending", "sending", "retry", "sent", "failed")
#: What :meth:`Store.raise_alert` did: stored it, found it stored already, or found another
#: alert on the same wallet and market within the cooldown (in trade time).
RaiseOutcome = Literal["inserted", "exists", "cooldown"]

# v2 (snake_case) field names -> our canonical v1 camelCase names.
_V2_NAMES = {
    "proxy_wallet": "proxyWallet",
    "token_id": "asset",
    "condition_id": "conditionId",
    "event_slug": "eventSlug",
    "outcome_index": "outcomeIndex",
    "transaction_hash": "transactionHash",
}


def trade_key(row: Mapping[str, Any]) -> str:
    """Our idempotency key for one Data API row (the API has no per-row id).

    sha256 of ``transactionHash|proxyWallet|asset|side|size|price|timestamp``; two genuinely
    separate fills identical in all of these collapse into one (rare, accepted).
    """
    parts = [
        str(row.get("transactionHash", "")).lower(),
        str(row.get("proxyWallet", "")).lower(),
        str(row.get("asset", "")),
        str(row.get("side", "")).upper(),
        repr(float(row.get("size", 0))),
        repr(float(row.get("price", 0))),
        str(int(row.get("timestamp", 0))),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


@dataclass(slots=True)
class Signal:
    """One reason an alert was raised: ``value`` crossed ``threshold``."""

    name: str
    value: float
    threshold: float
    detail: str = ""

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Signal:
        return cls(
            str(doc["name"]), float(doc["value"]), float(doc["threshold"]), doc.get("detail", "")
        )


@dataclass(slots=True)
class Trade:
    """One Data API trade row, in our canonical form. ``usdc_size`` = ``size * price``."""

    trade_key: str
    proxy_wallet: str
    side: Side
    asset: str
    condition_id: str
    size: float
    price: float
    timestamp: float
    transaction_hash: str = ""
    outcome: str = ""
    outcome_index: int | None = None
    title: str = ""
    slug: str = ""
    event_slug: str = ""
    icon: str = ""
    pseudonym: str = ""
    name: str = ""
    source: str = "data-api/v1/trades"
    ingested_at: float = 0.0
    anomaly_checked: bool = False
    anomaly_checked_at: float | None = None
    anomaly: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None

    @property
    def usdc_size(self) -> float:
        return self.size * self.price

    @classmethod
    def from_api(cls, row: Mapping[str, Any], *, ingested_at: float = 0.0) -> Trade:
        """Parse a Data API row (v1 camelCase, v2 snake_case, or an RTDS ``payload``)."""
        data = {_V2_NAMES.get(k, k): v for k, v in row.items()}
        try:
            side = str(data["side"]).upper()
            if side not in ("BUY", "SELL"):
                raise ValueError(f"side {side!r}")
            return cls(
                trade_key=trade_key(data),
                proxy_wallet=str(data["proxyWallet"]).lower(),
                side=side,  # type: ignore[arg-type]  # checked above
                asset=str(data["asset"]),
                condition_id=str(data["conditionId"]),
                size=float(data["size"]),
                price=float(data["price"]),
                timestamp=float(data["timestamp"]),
                transaction_hash=str(data.get("transactionHash") or ""),
                outcome=str(data.get("outcome") or ""),
                outcome_index=_int_or_none(data.get("outcomeIndex")),
                title=str(data.get("title") or ""),
                slug=str(data.get("slug") or ""),
                event_slug=str(data.get("eventSlug") or ""),
                icon=str(data.get("icon") or ""),
                pseudonym=str(data.get("pseudonym") or ""),
                name=str(data.get("name") or ""),
                source="data-api/v2/trades" if "proxy_wallet" in row else "data-api/v1/trades",
                ingested_at=ingested_at,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"not a Polymarket trade row ({exc})") from None

    def to_doc(self) -> dict[str, Any]:
        return {
            "tradeKey": self.trade_key,
            "transactionHash": self.transaction_hash,
            "proxyWallet": self.proxy_wallet,
            "side": self.side,
            "asset": self.asset,
            "conditionId": self.condition_id,
            "outcome": self.outcome,
            "outcomeIndex": self.outcome_index,
            "size": self.size,
            "price": self.price,
            "usdcSize": self.usdc_size,
            "timestamp": self.timestamp,
            "market": {
                "title": self.title,
                "slug": self.slug,
                "eventSlug": self.event_slug,
                "icon": self.icon,
            },
            "trader": {"name": self.name, "pseudonym": self.pseudonym},
            "source": self.source,
            "ingestedAt": self.ingested_at,
            "metadata": {
                "anomalyChecked": self.anomaly_checked,
                "anomalyCheckedAt": self.anomaly_checked_at,
            },
            "anomaly": self.anomaly,
            "analysis": self.analysis,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Trade:
        market = doc.get("market") or {}
        trader = doc.get("trader") or {}
        meta = doc.get("metadata") or {}
        return cls(
            trade_key=doc["tradeKey"],
            transaction_hash=doc.get("transactionHash", ""),
            proxy_wallet=doc["proxyWallet"],
            side=doc["side"],
            asset=doc["asset"],
            condition_id=doc["conditionId"],
            outcome=doc.get("outcome", ""),
            outcome_index=doc.get("outcomeIndex"),
            size=float(doc["size"]),
            price=float(doc["price"]),
            timestamp=float(doc["timestamp"]),
            title=market.get("title", ""),
            slug=market.get("slug", ""),
            event_slug=market.get("eventSlug", ""),
            icon=market.get("icon", ""),
            name=trader.get("name", ""),
            pseudonym=trader.get("pseudonym", ""),
            source=doc.get("source", ""),
            ingested_at=float(doc.get("ingestedAt") or 0.0),
            anomaly_checked=bool(meta.get("anomalyChecked")),
            anomaly_checked_at=meta.get("anomalyCheckedAt"),
            anomaly=doc.get("anomaly"),
            analysis=doc.get("analysis"),
        )


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


#: The order in which trades are checked and histories are cut: ``(timestamp, trade_key)``.
TradeCursor = tuple[float, str]


def cursor_of(trade: Trade) -> TradeCursor:
    return (trade.timestamp, trade.trade_key)


@dataclass(frozen=True, slots=True)
class TradePoint:
    """The few fields of a stored trade that histories are computed from."""

    timestamp: float
    trade_key: str
    wallet: str
    condition_id: str
    usdc: float

    @property
    def cursor(self) -> TradeCursor:
        return (self.timestamp, self.trade_key)


@dataclass(slots=True)
class WalletHistory:
    """What the store holds about a wallet *before* one of its trades (in trade order):
    how many trades, their USDC volume and the first one's time (None: no earlier trade)."""

    trade_count: int = 0
    volume: float = 0.0
    first_seen: float | None = None

    @property
    def avg_trade(self) -> float:
        return self.volume / self.trade_count if self.trade_count else 0.0

    def to_doc(self) -> dict[str, Any]:
        return {
            "tradeCount": self.trade_count,
            "volume": round(self.volume, 2),
            "firstSeen": self.first_seen,
        }


@dataclass(slots=True)
class WalletStats:
    """Statistics of one proxy wallet, recomputed by the whale update."""

    address: str
    trade_count: int = 0
    total_volume: float = 0.0
    buy_volume: float = 0.0
    sell_volume: float = 0.0
    volume_30d: float = 0.0
    max_trade: float = 0.0
    market_count: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    is_whale: bool = False
    whale_reasons: list[str] = field(default_factory=list)
    whale_since: float | None = None
    stats_computed_at: float | None = None
    pseudonym: str = ""

    @property
    def avg_trade(self) -> float:
        return self.total_volume / self.trade_count if self.trade_count else 0.0

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.address,
            "stats": {
                "tradeCount": self.trade_count,
                "totalVolume": self.total_volume,
                "buyVolume": self.buy_volume,
                "sellVolume": self.sell_volume,
                "volume30d": self.volume_30d,
                "maxTrade": self.max_trade,
                "avgTrade": self.avg_trade,
                "marketCount": self.market_count,
                "firstSeen": self.first_seen,
                "lastSeen": self.last_seen,
            },
            "isWhale": self.is_whale,
            "whaleReasons": list(self.whale_reasons),
            "whaleSince": self.whale_since,
            "statsComputedAt": self.stats_computed_at,
            "pseudonym": self.pseudonym,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> WalletStats:
        stats = doc.get("stats") or {}
        return cls(
            address=doc["_id"],
            trade_count=int(stats.get("tradeCount", 0)),
            total_volume=float(stats.get("totalVolume", 0.0)),
            buy_volume=float(stats.get("buyVolume", 0.0)),
            sell_volume=float(stats.get("sellVolume", 0.0)),
            volume_30d=float(stats.get("volume30d", 0.0)),
            max_trade=float(stats.get("maxTrade", 0.0)),
            market_count=int(stats.get("marketCount", 0)),
            first_seen=stats.get("firstSeen"),
            last_seen=stats.get("lastSeen"),
            is_whale=bool(doc.get("isWhale")),
            whale_reasons=list(doc.get("whaleReasons") or []),
            whale_since=doc.get("whaleSince"),
            stats_computed_at=doc.get("statsComputedAt"),
            pseudonym=doc.get("pseudonym", ""),
        )


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """The outcome of :meth:`Store.raise_alert`: ``alert_id`` is the alert stored (inserted or
    exists) or the one whose cooldown held this one back."""

    outcome: RaiseOutcome
    alert_id: str


def alert_id_for(dedupe_key: str) -> str:
    """Alert ids derive from the dedupe key, so raising an alert twice yields the same id (and
    the same alerts-job id)."""
    return hashlib.sha256(dedupe_key.encode()).hexdigest()[:24]


@dataclass(slots=True)
class Alert:
    """An outbox record: an alert to deliver once, and the state of its delivery."""

    dedupe_key: str
    kind: str
    severity: str
    trade_key: str
    wallet: str
    condition_id: str
    signals: list[Signal]
    score: float
    summary: dict[str, Any] = field(default_factory=dict)
    priority: str = "NORMAL"
    trade_time: float = 0.0  # the trade's own time: cooldowns are measured in trade time
    id: str = ""
    status: AlertStatus = "pending"
    attempts: int = 0
    next_attempt_at: float | None = None
    locked_until: float | None = None
    attempt_id: str | None = None
    last_error: str | None = None
    discord_message_id: str | None = None
    created_at: float = 0.0
    sent_at: float | None = None

    def __post_init__(self) -> None:
        if not self.id:
            self.id = alert_id_for(self.dedupe_key)

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "dedupeKey": self.dedupe_key,
            "kind": self.kind,
            "severity": self.severity,
            "tradeKey": self.trade_key,
            "wallet": self.wallet,
            "conditionId": self.condition_id,
            "signals": [s.to_doc() for s in self.signals],
            "score": self.score,
            "summary": dict(self.summary),
            "priority": self.priority,
            "tradeTime": self.trade_time,
            "status": self.status,
            "attempts": self.attempts,
            "nextAttemptAt": self.next_attempt_at,
            "lockedUntil": self.locked_until,
            "attemptId": self.attempt_id,
            "lastError": self.last_error,
            "discordMessageId": self.discord_message_id,
            "createdAt": self.created_at,
            "sentAt": self.sent_at,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Alert:
        return cls(
            id=doc["_id"],
            dedupe_key=doc["dedupeKey"],
            kind=doc["kind"],
            severity=doc["severity"],
            trade_key=doc["tradeKey"],
            wallet=doc["wallet"],
            condition_id=doc["conditionId"],
            signals=[Signal.from_doc(s) for s in doc.get("signals") or []],
            score=float(doc.get("score", 0.0)),
            summary=dict(doc.get("summary") or {}),
            priority=doc.get("priority", "NORMAL"),
            trade_time=float(
                doc.get("tradeTime") or (doc.get("summary") or {}).get("timestamp") or 0.0
            ),
            status=doc.get("status", "pending"),
            attempts=int(doc.get("attempts", 0)),
            next_attempt_at=doc.get("nextAttemptAt"),
            locked_until=doc.get("lockedUntil"),
            attempt_id=doc.get("attemptId"),
            last_error=doc.get("lastError"),
            discord_message_id=doc.get("discordMessageId"),
            created_at=float(doc.get("createdAt") or 0.0),
            sent_at=doc.get("sentAt"),
        )
