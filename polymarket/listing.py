"""Read-only listings of what the detector found: recent alerts and wallets, one page at a
time, as JSON-ready dicts (what ``polyjobs alerts`` / ``polyjobs wallets`` print).

Everything here is data from the store or from Polymarket (titles, pseudonyms, errors): callers
show it as text, never as markup. Delivery errors are redacted; links are built only from
URL-quoted values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from polyjobs.errors import InvalidArgumentError
from polyjobs.polymarket.links import market_url, transaction_url
from polyjobs.redact import redact_text

if TYPE_CHECKING:
    from polyjobs.polymarket.models import Alert, WalletStats
    from polyjobs.polymarket.store import Store

SITE = "https://polymarket.com"
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: ``items`` from ``offset`` on, of ``total``."""

    items: list[dict[str, Any]]
    offset: int
    limit: int
    total: int

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "limit": self.limit,
            "total": self.total,
            "items": self.items,
        }


def wallet_link(address: str) -> str:
    return f"{SITE}/profile/{quote(address, safe='')}"


def alert_row(alert: Alert) -> dict[str, Any]:
    """An alert as a listing shows it: what was found (signals with values and thresholds), on
    which wallet and market, and how far its delivery got."""
    s = alert.summary
    tx = str(s.get("transactionHash") or "")
    return {
        "id": alert.id,
        "created_at": alert.created_at,
        "trade_time": alert.trade_time,
        "severity": alert.severity,
        "kind": alert.kind,
        "score": alert.score,
        "signals": [
            {"name": g.name, "value": g.value, "threshold": g.threshold, "detail": g.detail}
            for g in alert.signals
        ],
        "wallet": alert.wallet,
        "pseudonym": str(s.get("pseudonym") or ""),
        "market": alert.condition_id,
        "title": str(s.get("title") or ""),
        "side": str(s.get("side") or ""),
        "outcome": str(s.get("outcome") or ""),
        "usdc": s.get("usdcSize"),
        "trade_key": alert.trade_key,
        "transaction_hash": tx,
        "delivery": {
            "status": alert.status,
            "attempts": alert.attempts,
            "sent_at": alert.sent_at,
            "next_attempt_at": alert.next_attempt_at,
            "last_error": None if alert.last_error is None else redact_text(alert.last_error),
        },
        "links": {
            "market": market_url(s),
            "wallet": wallet_link(alert.wallet),
            "transaction": transaction_url(tx),
        },
    }


def wallet_row(wallet: WalletStats) -> dict[str, Any]:
    """A wallet as a listing shows it: volumes, whale flag and reasons, first and last trade."""
    return {
        "address": wallet.address,
        "pseudonym": wallet.pseudonym,
        "is_whale": wallet.is_whale,
        "whale_reasons": list(wallet.whale_reasons),
        "whale_since": wallet.whale_since,
        "trade_count": wallet.trade_count,
        "total_volume": wallet.total_volume,
        "volume_30d": wallet.volume_30d,
        "buy_volume": wallet.buy_volume,
        "sell_volume": wallet.sell_volume,
        "max_trade": wallet.max_trade,
        "market_count": wallet.market_count,
        "first_seen": wallet.first_seen,
        "last_seen": wallet.last_seen,
        "stats_computed_at": wallet.stats_computed_at,
        "link": wallet_link(wallet.address),
    }


def signals_text(signals: list[dict[str, Any]]) -> str:
    """An alert row's signals on one line: ``large_trade 15000 (>= 10000), ...``."""
    return ", ".join(f"{s['name']} {s['value']:g} (>= {s['threshold']:g})" for s in signals)


def delivery_text(delivery: dict[str, Any]) -> str:
    """An alert row's delivery state on one line: ``retry (2 attempt(s))``."""
    state = str(delivery["status"])
    if delivery["attempts"]:
        state += f" ({delivery['attempts']} attempt(s))"
    return state


def _check(offset: int, limit: int) -> None:
    if offset < 0:
        raise InvalidArgumentError(f"offset must be >= 0, got {offset}")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"limit must be within 1..{MAX_PAGE_SIZE}, got {limit}")


async def alerts_page(store: Store, offset: int = 0, limit: int = 20) -> Page:
    """Alerts newest first."""
    _check(offset, limit)
    alerts = await store.recent_alerts(offset, limit)
    return Page([alert_row(a) for a in alerts], offset, limit, await store.count_alerts())


async def wallets_page(
    store: Store, offset: int = 0, limit: int = 20, whales_only: bool = False
) -> Page:
    """Wallets by total volume, largest first (only whales with ``whales_only``)."""
    _check(offset, limit)
    wallets = await store.list_wallets(offset, limit, whales_only)
    total = await store.count_wallets(whales_only)
    return Page([wallet_row(w) for w in wallets], offset, limit, total)
