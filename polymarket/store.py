"""The store interface of the Polymarket domain, and ``open_store(url)``.

Two implementations pass the same contract suite (``tests/polymarket/test_pm_store_contract.py``):
:class:`~polyjobs.polymarket.sqlite_store.SqliteStore` (embedded; a file, or in memory) and
:class:`~polyjobs.polymarket.mongo_store.MongoStore` (pymongo). Every write is idempotent:
a trade ingested twice is stored once, an alert raised twice exists once.

Trades are ordered by ``(timestamp, trade_key)`` (a ``TradeCursor``): the anomaly checks follow
that order and a wallet's history "before a trade" is cut there, so two trades in the same
second are ordered the same way everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from polyjobs.errors import ConfigError
from polyjobs.polymarket.models import (
    Alert,
    AlertStatus,
    RaisedAlert,
    Trade,
    TradeCursor,
    TradePoint,
    WalletHistory,
    WalletStats,
)
from polyjobs.redact import redact_url


class Store(Protocol):
    """Where trades, wallet statistics, alerts and job watermarks live. Times: epoch seconds."""

    async def open(self) -> None:
        """Connect and create tables / indexes (idempotent)."""

    async def close(self) -> None: ...

    # -- trades ----------------------------------------------------------------------------
    async def add_trades(self, trades: Sequence[Trade]) -> int:
        """Insert the trades not stored yet (by ``trade_key``); return how many were new."""
        ...

    async def get_trade(self, trade_key: str) -> Trade | None: ...

    async def get_trades(self, trade_keys: Sequence[str]) -> dict[str, Trade]:
        """The stored trades among ``trade_keys`` (one read), by key; missing ones absent."""
        ...

    async def unchecked_trades(
        self,
        since: float | None = None,
        limit: int = 1000,
        *,
        wallet: str | None = None,
        condition_id: str | None = None,
        until: TradeCursor | None = None,
    ) -> list[Trade]:
        """Trades not anomaly-checked, oldest first (by ``(timestamp, trade_key)``), at most
        ``limit``: with ``timestamp >= since`` (None: however old), of one wallet and/or one
        market, and ordered at or before ``until`` when given."""
        ...

    async def count_unchecked(self) -> int:
        """How many trades are not anomaly-checked yet (the backlog)."""
        ...

    async def checked_counts(self, checked_since: float) -> dict[str, int]:
        """Of the trades marked checked at or after ``checked_since`` (wall clock): how many
        (``checked``), flagged (``detected``), held back by a cooldown (``suppressed``) and
        skipped as too old (``skipped``)."""
        ...

    async def mark_checked(self, results: Mapping[str, dict[str, Any] | None], at: float) -> int:
        """Mark trades checked in one bulk write (only those still unchecked); ``results``
        maps a trade key to its anomaly record (or None). Returns how many were marked."""
        ...

    async def set_analysis(self, trade_key: str, analysis: dict[str, Any]) -> bool: ...

    async def market_volumes(self, condition_ids: Sequence[str], since: float) -> dict[str, float]:
        """USDC volume per market of the stored trades with ``timestamp >= since``."""
        ...

    # -- histories "as of" a trade ----------------------------------------------------------
    async def wallet_totals(
        self, wallets: Sequence[str], before: TradeCursor
    ) -> dict[str, WalletHistory]:
        """Per wallet, its trades ordered before ``before``: count, USDC volume, first time.
        Wallets without such trades are left out."""
        ...

    async def market_totals(
        self, markets: Sequence[str], since: float, before: TradeCursor
    ) -> dict[str, float]:
        """Per market, the USDC volume of its trades with ``timestamp >= since`` ordered before
        ``before``. Markets without such trades are left out."""
        ...

    async def trade_points(
        self, wallets: Sequence[str], markets: Sequence[str], since: float, until: float
    ) -> list[TradePoint]:
        """The trades of any of ``wallets`` or of ``markets`` with ``since <= timestamp <=
        until``, in trade order, each once."""
        ...

    # -- wallets ---------------------------------------------------------------------------
    async def dirty_wallets(
        self, ingested_since: float | None, after: str, limit: int
    ) -> list[str]:
        """Wallets (sorted, ``> after``) with trades ingested at or after ``ingested_since``
        (all wallets when None), at most ``limit``."""
        ...

    async def compute_wallet_stats(
        self, wallets: Sequence[str], since_30d: float
    ) -> list[WalletStats]:
        """Aggregate the trades of ``wallets`` (one query); whale fields are left unset."""
        ...

    async def get_wallets(self, addresses: Sequence[str]) -> dict[str, WalletStats]: ...

    async def upsert_wallets(self, wallets: Sequence[WalletStats]) -> None:
        """Write the wallets in one bulk upsert."""
        ...

    # -- job state -------------------------------------------------------------------------
    async def get_state(self, key: str) -> Any: ...

    async def set_state(self, key: str, value: Any) -> None: ...

    # -- alerts (outbox) -------------------------------------------------------------------
    async def insert_alert(self, alert: Alert) -> bool:
        """Insert unless an alert with this dedupe key exists; True when inserted."""
        ...

    async def get_alert(self, alert_id: str) -> Alert | None: ...

    async def raise_alert(self, alert: Alert, cooldown: float) -> RaisedAlert:
        """Store ``alert`` unless an alert with its dedupe key exists (``exists``) or, with
        ``cooldown > 0``, an alert on the same wallet and market whose ``trade_time`` is less
        than ``cooldown`` seconds away from this one's, before or after (``cooldown``).

        Atomic: of any number of concurrent calls (jobs, processes) for trades of one wallet
        and market within one cooldown, exactly one stores its alert.
        """
        ...

    async def list_alerts(self, created_since: float = 0.0, limit: int = 1000) -> list[Alert]:
        """Alerts created at or after ``created_since`` (wall clock), oldest first."""
        ...

    async def recent_alerts(self, offset: int, limit: int) -> list[Alert]:
        """One page of alerts, newest first (by creation time, then id, both descending)."""
        ...

    async def count_alerts(self) -> int: ...

    async def list_wallets(self, offset: int, limit: int, whales_only: bool) -> list[WalletStats]:
        """One page of wallets by total volume, largest first (then by address)."""
        ...

    async def count_wallets(self, whales_only: bool) -> int: ...

    async def claim_alert(
        self, alert_id: str, now: float, lease: float, attempt_id: str
    ) -> Alert | None:
        """Atomically move a ``pending``/``retry`` alert (or a ``sending`` one whose lease
        expired) to ``sending`` under ``attempt_id``; None if it is not claimable."""
        ...

    async def finish_alert(
        self,
        alert_id: str,
        attempt_id: str,
        status: AlertStatus,
        now: float,
        *,
        error: str | None = None,
        message_id: str | None = None,
        next_attempt_at: float | None = None,
    ) -> bool:
        """Record the outcome of the attempt ``attempt_id``; False if it lost the claim."""
        ...


@asynccontextmanager
async def open_store(url: str, *, database: str = "polyjobs") -> AsyncIterator[Store]:
    """Open the store for ``url`` (``sqlite:///path``, ``sqlite://:memory:``, ``memory://``,
    ``mongodb://…``) and close it on exit."""
    store: Store
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from polyjobs.polymarket.mongo_store import MongoStore

        store = MongoStore.from_uri(url, database)
    elif url.startswith(("sqlite://", "memory://")):
        from polyjobs.polymarket.sqlite_store import SqliteStore

        store = SqliteStore.from_url(url)
    else:
        raise ConfigError(
            f"unknown store URL {redact_url(url)!r} (use sqlite://, memory://, mongodb://)"
        )
    await store.open()
    try:
        yield store
    finally:
        await store.close()
