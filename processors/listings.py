"""The detector's read-only listings for the board (``polyjobs_listings``): its recent
alerts and its wallets, from its store, as ``polyjobs alerts`` / ``polyjobs wallets`` show them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from polyjobs.listings import Listing, ListingColumn, ListingPage

if TYPE_CHECKING:
    from polyjobs.polymarket.store import Store


@asynccontextmanager
async def _store(settings: Mapping[str, str]) -> AsyncIterator[Store]:
    from polyjobs.polymarket.config import load_config
    from polyjobs.polymarket.store import open_store

    config = load_config(settings)
    async with open_store(config.store_url, database=config.mongodb_db) as store:
        yield store


def _alert(row: Mapping[str, Any]) -> dict[str, Any]:
    from polyjobs.polymarket.listing import delivery_text, signals_text

    links = row["links"]
    return {
        "trade_time": row["trade_time"] or row["created_at"],
        "severity": row["severity"],
        "score": round(float(row["score"]), 2),
        "signals": signals_text(row["signals"]),
        "wallet": row["pseudonym"] or row["wallet"],
        "wallet_link": links["wallet"],
        "market": row["title"] or row["market"],
        "market_link": links["market"],
        "trade": f"{row['side']} {row['outcome']} ${float(row['usdc'] or 0):,.2f}".strip(),
        "transaction": links["transaction"],
        "delivery": delivery_text(row["delivery"]),
        "id": row["id"],
    }


async def _alerts(settings: Mapping[str, str], offset: int, limit: int) -> ListingPage:
    from polyjobs.polymarket.listing import alerts_page

    async with _store(settings) as store:
        page = await alerts_page(store, offset, limit)
    return ListingPage([_alert(r) for r in page.items], page.total)


def _wallet(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "address": row["address"],
        "link": row["link"],
        "name": row["pseudonym"],
        "whale": "whale" if row["is_whale"] else "",
        "reasons": ", ".join(row["whale_reasons"]),
        "volume": row["total_volume"],
        "volume_30d": row["volume_30d"],
        "trades": row["trade_count"],
        "markets": row["market_count"],
        "last_seen": row["last_seen"],
    }


async def _wallets(settings: Mapping[str, str], offset: int, limit: int) -> ListingPage:
    from polyjobs.polymarket.listing import wallets_page

    async with _store(settings) as store:
        page = await wallets_page(store, offset, limit)
    return ListingPage([_wallet(r) for r in page.items], page.total)


ALERTS = Listing(
    key="alerts",
    title="Alerts",
    description="What the detector found, newest first: signals with their values and"
    " thresholds, the wallet, the market, the trade and how far its delivery got.",
    columns=(
        ListingColumn("trade time", "trade_time", "time"),
        ListingColumn("severity", "severity"),
        ListingColumn("score", "score", "num"),
        ListingColumn("signals", "signals"),
        ListingColumn("wallet", "wallet"),
        ListingColumn("profile", "wallet_link", "link"),
        ListingColumn("market", "market"),
        ListingColumn("market page", "market_link", "link"),
        ListingColumn("trade", "trade"),
        ListingColumn("transaction", "transaction", "link"),
        ListingColumn("delivery", "delivery"),
        ListingColumn("id", "id"),
    ),
    fetch=_alerts,
)
WALLETS = Listing(
    key="wallets",
    title="Wallets",
    description="Wallets by total volume, largest first, with their whale flags and reasons"
    " (from the hourly whale update).",
    columns=(
        ListingColumn("address", "address"),
        ListingColumn("name", "name"),
        ListingColumn("whale", "whale"),
        ListingColumn("reasons", "reasons"),
        ListingColumn("volume", "volume", "num"),
        ListingColumn("30 days", "volume_30d", "num"),
        ListingColumn("trades", "trades", "num"),
        ListingColumn("markets", "markets", "num"),
        ListingColumn("last trade", "last_seen", "time"),
        ListingColumn("profile", "link", "link"),
    ),
    fetch=_wallets,
)
LISTINGS = (ALERTS, WALLETS)
