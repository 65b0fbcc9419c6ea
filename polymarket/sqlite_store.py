"""The embedded store: one SQLite file (WAL, several processes) or an in-memory database.

URLs follow the queue backend's convention: ``sqlite:///relative/path.db``,
``sqlite:////absolute/path.db``, and ``sqlite://:memory:`` or ``memory://`` for tests.
sqlite3 is synchronous: every call runs in a thread (``asyncio.to_thread``) under one lock.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from polyjobs.errors import BackendUnavailableError, ConfigError
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

T = TypeVar("T")

OPEN_RETRY_SECONDS = 10.0
_TABLES = """
CREATE TABLE IF NOT EXISTS trades (
    trade_key TEXT PRIMARY KEY,
    proxy_wallet TEXT NOT NULL,
    condition_id TEXT NOT NULL,
    side TEXT NOT NULL,
    usdc_size REAL NOT NULL,
    timestamp REAL NOT NULL,
    ingested_at REAL NOT NULL,
    pseudonym TEXT NOT NULL DEFAULT '',
    anomaly_checked INTEGER NOT NULL DEFAULT 0,
    anomaly_checked_at REAL,
    anomaly TEXT,
    analysis TEXT,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS wallets (address TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    wallet TEXT NOT NULL,
    condition_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    locked_until REAL,
    attempt_id TEXT,
    last_error TEXT,
    discord_message_id TEXT,
    sent_at REAL,
    doc TEXT NOT NULL,
    trade_time REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS job_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Histories "as of" a trade read (timestamp, trade_key, usdc_size) per wallet and per market:
# the two history indexes cover those reads. Indexes of earlier versions are dropped.
_INDEXES = """
DROP INDEX IF EXISTS trades_unchecked_by_ts;
DROP INDEX IF EXISTS trades_wallet_ts;
DROP INDEX IF EXISTS trades_market_ts;
DROP INDEX IF EXISTS alerts_wallet_market;
CREATE INDEX IF NOT EXISTS trades_unchecked ON trades (timestamp, trade_key)
    WHERE anomaly_checked = 0;
CREATE INDEX IF NOT EXISTS trades_wallet_history
    ON trades (proxy_wallet, timestamp, trade_key, usdc_size);
CREATE INDEX IF NOT EXISTS trades_market_history
    ON trades (condition_id, timestamp, trade_key, usdc_size);
CREATE INDEX IF NOT EXISTS trades_ingested ON trades (ingested_at, proxy_wallet);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS alerts_cooldown ON alerts (wallet, condition_id, trade_time);
CREATE INDEX IF NOT EXISTS alerts_created ON alerts (created_at);
"""

_TRADE_COLUMNS = "doc, anomaly_checked, anomaly_checked_at, anomaly, analysis"
_ALERT_COLUMNS = (
    "doc, status, attempts, next_attempt_at, locked_until, attempt_id, last_error,"
    " discord_message_id, sent_at"
)
_IN_JSON = "(SELECT value FROM json_each(?))"


def sqlite_path(url: str) -> str:
    """The database path of a ``sqlite://`` or ``memory://`` URL (``:memory:`` for memory)."""
    if url.startswith("memory://") or url in (
        "sqlite://",
        "sqlite://:memory:",
        "sqlite:///:memory:",
    ):
        return ":memory:"
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"store URL {url!r} must look like sqlite:///path/to.db")
    path = url[len("sqlite:///") :]
    if not path:
        raise ConfigError(f"store URL {url!r} names no file")
    return path


class SqliteStore:
    """The :class:`~polyjobs.polymarket.store.Store` on SQLite (stdlib ``sqlite3``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(sqlite_path(url))

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path}>"

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Switching a new file to WAL takes an exclusive lock without waiting on the busy
        # timeout, so processes opening the same new file at once retry for a while.
        deadline = time.monotonic() + OPEN_RETRY_SECONDS
        while True:
            try:
                self._conn = self._connect()
                return
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() >= deadline:
                    raise BackendUnavailableError(f"cannot open store {self.path}: {exc}") from None
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise BackendUnavailableError(f"cannot open store {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_TABLES)
            _migrate(conn)
            conn.executescript(_INDEXES)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                conn = self._conn
                if conn is None:
                    raise BackendUnavailableError(f"store {self.path} is not open")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

        return await asyncio.to_thread(call)

    # -- trades ----------------------------------------------------------------------------
    async def add_trades(self, trades: Sequence[Trade]) -> int:
        rows = [
            (
                t.trade_key,
                t.proxy_wallet,
                t.condition_id,
                t.side,
                t.usdc_size,
                t.timestamp,
                t.ingested_at,
                t.pseudonym,
                int(t.anomaly_checked),
                t.anomaly_checked_at,
                _dumps(t.anomaly),
                _dumps(t.analysis),
                json.dumps(t.to_doc()),
            )
            for t in trades
        ]

        def run(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO trades VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )
            return conn.total_changes - before

        return await self._run(run)

    async def get_trade(self, trade_key: str) -> Trade | None:
        def run(conn: sqlite3.Connection) -> Trade | None:
            row = conn.execute(
                f"SELECT {_TRADE_COLUMNS} FROM trades WHERE trade_key = ?", (trade_key,)
            ).fetchone()
            return None if row is None else _trade(row)

        return await self._run(run)

    async def get_trades(self, trade_keys: Sequence[str]) -> dict[str, Trade]:
        keys = list(dict.fromkeys(trade_keys))

        def run(conn: sqlite3.Connection) -> dict[str, Trade]:
            found: dict[str, Trade] = {}
            for start in range(0, len(keys), 500):  # under SQLite's bound-variable limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                    f"SELECT {_TRADE_COLUMNS} FROM trades WHERE trade_key IN ({marks})", chunk
                ):
                    trade = _trade(row)
                    found[trade.trade_key] = trade
            return found

        return await self._run(run) if keys else {}

    async def unchecked_trades(
        self,
        since: float | None = None,
        limit: int = 1000,
        *,
        wallet: str | None = None,
        condition_id: str | None = None,
        until: TradeCursor | None = None,
    ) -> list[Trade]:
        where: list[str] = ["anomaly_checked = 0"]
        params: list[Any] = []
        if since is not None:
            where.append("timestamp >= ?")
            params.append(since)
        if wallet is not None:
            where.append("proxy_wallet = ?")
            params.append(wallet)
        if condition_id is not None:
            where.append("condition_id = ?")
            params.append(condition_id)
        if until is not None:
            where.append("(timestamp < ? OR (timestamp = ? AND trade_key <= ?))")
            params += [until[0], until[0], until[1]]
        sql = (
            f"SELECT {_TRADE_COLUMNS} FROM trades WHERE {' AND '.join(where)}"
            " ORDER BY timestamp, trade_key LIMIT ?"
        )

        def run(conn: sqlite3.Connection) -> list[Trade]:
            return [_trade(r) for r in conn.execute(sql, (*params, limit))]

        return await self._run(run)

    async def count_unchecked(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT COUNT(*) FROM trades WHERE anomaly_checked = 0").fetchone()
            return int(row[0])

        return await self._run(run)

    async def checked_counts(self, checked_since: float) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            row = conn.execute(
                "SELECT COUNT(*), TOTAL(json_extract(anomaly, '$.flagged') = 1),"
                " TOTAL(json_extract(anomaly, '$.suppressed') IS NOT NULL),"
                " TOTAL(json_extract(anomaly, '$.skipped') IS NOT NULL)"
                " FROM trades WHERE anomaly_checked = 1 AND anomaly_checked_at >= ?",
                (checked_since,),
            ).fetchone()
            names = ("checked", "detected", "suppressed", "skipped")
            return {name: int(value) for name, value in zip(names, row, strict=True)}

        return await self._run(run)

    async def mark_checked(self, results: Mapping[str, dict[str, Any] | None], at: float) -> int:
        rows = [(at, _dumps(anomaly), key) for key, anomaly in results.items()]

        def run(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "UPDATE trades SET anomaly_checked = 1, anomaly_checked_at = ?, anomaly = ?"
                " WHERE trade_key = ? AND anomaly_checked = 0",
                rows,
            )
            return conn.total_changes - before

        return await self._run(run)

    async def set_analysis(self, trade_key: str, analysis: dict[str, Any]) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE trades SET analysis = ? WHERE trade_key = ?", (_dumps(analysis), trade_key)
            )
            return cur.rowcount > 0

        return await self._run(run)

    async def market_volumes(self, condition_ids: Sequence[str], since: float) -> dict[str, float]:
        def run(conn: sqlite3.Connection) -> dict[str, float]:
            rows = conn.execute(
                "SELECT condition_id, SUM(usdc_size) FROM trades"
                f" WHERE condition_id IN {_IN_JSON} AND timestamp >= ? GROUP BY condition_id",
                (json.dumps(list(condition_ids)), since),
            )
            return {cid: float(total) for cid, total in rows}

        return await self._run(run)

    # -- histories "as of" a trade ----------------------------------------------------------
    async def wallet_totals(
        self, wallets: Sequence[str], before: TradeCursor
    ) -> dict[str, WalletHistory]:
        def run(conn: sqlite3.Connection) -> dict[str, WalletHistory]:
            rows = conn.execute(
                "SELECT proxy_wallet, COUNT(*), SUM(usdc_size), MIN(timestamp) FROM trades"
                f" WHERE proxy_wallet IN {_IN_JSON}"
                " AND (timestamp < ? OR (timestamp = ? AND trade_key < ?)) GROUP BY proxy_wallet",
                (json.dumps(list(wallets)), before[0], before[0], before[1]),
            )
            return {w: WalletHistory(n, float(v), first) for w, n, v, first in rows}

        return await self._run(run)

    async def market_totals(
        self, markets: Sequence[str], since: float, before: TradeCursor
    ) -> dict[str, float]:
        def run(conn: sqlite3.Connection) -> dict[str, float]:
            rows = conn.execute(
                "SELECT condition_id, SUM(usdc_size) FROM trades"
                f" WHERE condition_id IN {_IN_JSON} AND timestamp >= ?"
                " AND (timestamp < ? OR (timestamp = ? AND trade_key < ?)) GROUP BY condition_id",
                (json.dumps(list(markets)), since, before[0], before[0], before[1]),
            )
            return {m: float(v) for m, v in rows}

        return await self._run(run)

    async def trade_points(
        self, wallets: Sequence[str], markets: Sequence[str], since: float, until: float
    ) -> list[TradePoint]:
        columns = "timestamp, trade_key, proxy_wallet, condition_id, usdc_size"
        sql = (
            f"SELECT {columns} FROM trades WHERE proxy_wallet IN {_IN_JSON}"
            " AND timestamp BETWEEN ? AND ?"
            f" UNION SELECT {columns} FROM trades WHERE condition_id IN {_IN_JSON}"
            " AND timestamp BETWEEN ? AND ? ORDER BY 1, 2"
        )
        params = (json.dumps(list(wallets)), since, until, json.dumps(list(markets)), since, until)

        def run(conn: sqlite3.Connection) -> list[TradePoint]:
            return [TradePoint(t, k, w, m, float(u)) for t, k, w, m, u in conn.execute(sql, params)]

        return await self._run(run)

    # -- wallets ---------------------------------------------------------------------------
    async def dirty_wallets(
        self, ingested_since: float | None, after: str, limit: int
    ) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT DISTINCT proxy_wallet FROM trades WHERE ingested_at >= ?"
                " AND proxy_wallet > ? ORDER BY proxy_wallet LIMIT ?",
                (ingested_since if ingested_since is not None else float("-inf"), after, limit),
            )
            return [r[0] for r in rows]

        return await self._run(run)

    async def compute_wallet_stats(
        self, wallets: Sequence[str], since_30d: float
    ) -> list[WalletStats]:
        def run(conn: sqlite3.Connection) -> list[WalletStats]:
            rows = conn.execute(
                "SELECT proxy_wallet, COUNT(*), SUM(usdc_size),"
                " SUM(CASE WHEN side = 'BUY' THEN usdc_size ELSE 0 END),"
                " SUM(CASE WHEN side = 'SELL' THEN usdc_size ELSE 0 END),"
                " SUM(CASE WHEN timestamp >= ? THEN usdc_size ELSE 0 END),"
                " MAX(usdc_size), COUNT(DISTINCT condition_id), MIN(timestamp), MAX(timestamp),"
                " MAX(pseudonym)"
                f" FROM trades WHERE proxy_wallet IN {_IN_JSON} GROUP BY proxy_wallet",
                (since_30d, json.dumps(list(wallets))),
            )
            return [
                WalletStats(
                    address=r[0],
                    trade_count=r[1],
                    total_volume=r[2],
                    buy_volume=r[3],
                    sell_volume=r[4],
                    volume_30d=r[5],
                    max_trade=r[6],
                    market_count=r[7],
                    first_seen=r[8],
                    last_seen=r[9],
                    pseudonym=r[10] or "",
                )
                for r in rows
            ]

        return await self._run(run)

    async def get_wallets(self, addresses: Sequence[str]) -> dict[str, WalletStats]:
        def run(conn: sqlite3.Connection) -> dict[str, WalletStats]:
            rows = conn.execute(
                f"SELECT doc FROM wallets WHERE address IN {_IN_JSON}",
                (json.dumps(list(addresses)),),
            )
            found = (WalletStats.from_doc(json.loads(r[0])) for r in rows)
            return {w.address: w for w in found}

        return await self._run(run)

    async def list_wallets(self, offset: int, limit: int, whales_only: bool) -> list[WalletStats]:
        where = " WHERE json_extract(doc, '$.isWhale')" if whales_only else ""

        def run(conn: sqlite3.Connection) -> list[WalletStats]:
            rows = conn.execute(
                f"SELECT doc FROM wallets{where}"
                " ORDER BY json_extract(doc, '$.stats.totalVolume') DESC, address"
                " LIMIT ? OFFSET ?",
                (limit, offset),
            )
            return [WalletStats.from_doc(json.loads(r[0])) for r in rows]

        return await self._run(run)

    async def count_wallets(self, whales_only: bool) -> int:
        where = " WHERE json_extract(doc, '$.isWhale')" if whales_only else ""

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute(f"SELECT count(*) FROM wallets{where}").fetchone()[0])

        return await self._run(run)

    async def upsert_wallets(self, wallets: Sequence[WalletStats]) -> None:
        rows = [(w.address, json.dumps(w.to_doc())) for w in wallets]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO wallets VALUES (?, ?)"
                " ON CONFLICT(address) DO UPDATE SET doc = excluded.doc",
                rows,
            )

        await self._run(run)

    # -- job state -------------------------------------------------------------------------
    async def get_state(self, key: str) -> Any:
        def run(conn: sqlite3.Connection) -> Any:
            row = conn.execute("SELECT value FROM job_state WHERE key = ?", (key,)).fetchone()
            return None if row is None else json.loads(row[0])

        return await self._run(run)

    async def set_state(self, key: str, value: Any) -> None:
        text = json.dumps(value)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO job_state VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, text),
            )

        await self._run(run)

    # -- alerts ----------------------------------------------------------------------------
    async def insert_alert(self, alert: Alert) -> bool:
        row = _alert_row(alert)

        def run(conn: sqlite3.Connection) -> bool:
            return _insert_alert(conn, row)

        return await self._run(run)

    async def raise_alert(self, alert: Alert, cooldown: float) -> RaisedAlert:
        row = _alert_row(alert)

        def run(conn: sqlite3.Connection) -> RaisedAlert:
            # BEGIN IMMEDIATE (see _run) holds the write lock from the first read, so no other
            # connection or process can insert between the cooldown check and the insert.
            found = conn.execute(
                "SELECT id FROM alerts WHERE dedupe_key = ?", (alert.dedupe_key,)
            ).fetchone()
            if found is not None:
                return RaisedAlert("exists", found[0])
            if cooldown > 0:
                near = conn.execute(
                    "SELECT id FROM alerts WHERE wallet = ? AND condition_id = ?"
                    " AND trade_time > ? AND trade_time < ? ORDER BY trade_time LIMIT 1",
                    (
                        alert.wallet,
                        alert.condition_id,
                        alert.trade_time - cooldown,
                        alert.trade_time + cooldown,
                    ),
                ).fetchone()
                if near is not None:
                    return RaisedAlert("cooldown", near[0])
            _insert_alert(conn, row)
            return RaisedAlert("inserted", alert.id)

        return await self._run(run)

    async def list_alerts(self, created_since: float = 0.0, limit: int = 1000) -> list[Alert]:
        def run(conn: sqlite3.Connection) -> list[Alert]:
            rows = conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE created_at >= ?"
                " ORDER BY created_at, id LIMIT ?",
                (created_since, limit),
            )
            return [_alert(r) for r in rows]

        return await self._run(run)

    async def recent_alerts(self, offset: int, limit: int) -> list[Alert]:
        def run(conn: sqlite3.Connection) -> list[Alert]:
            rows = conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts"
                " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            )
            return [_alert(r) for r in rows]

        return await self._run(run)

    async def count_alerts(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM alerts").fetchone()[0])

        return await self._run(run)

    async def get_alert(self, alert_id: str) -> Alert | None:
        def run(conn: sqlite3.Connection) -> Alert | None:
            return _get_alert(conn, alert_id)

        return await self._run(run)

    async def claim_alert(
        self, alert_id: str, now: float, lease: float, attempt_id: str
    ) -> Alert | None:
        def run(conn: sqlite3.Connection) -> Alert | None:
            cur = conn.execute(
                "UPDATE alerts SET status = 'sending', attempts = attempts + 1,"
                " locked_until = ?, attempt_id = ? WHERE id = ? AND (status IN ('pending', 'retry')"
                " OR (status = 'sending' AND locked_until < ?))",
                (now + lease, attempt_id, alert_id, now),
            )
            return _get_alert(conn, alert_id) if cur.rowcount else None

        return await self._run(run)

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
        sent_at = now if status == "sent" else None

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE alerts SET status = ?, last_error = ?, discord_message_id = ?,"
                " next_attempt_at = ?, sent_at = ?, locked_until = NULL"
                " WHERE id = ? AND attempt_id = ? AND status = 'sending'",
                (status, error, message_id, next_attempt_at, sent_at, alert_id, attempt_id),
            )
            return cur.rowcount > 0

        return await self._run(run)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _trade(row: Sequence[Any]) -> Trade:
    doc = json.loads(row[0])
    doc["metadata"] = {"anomalyChecked": bool(row[1]), "anomalyCheckedAt": row[2]}
    doc["anomaly"] = None if row[3] is None else json.loads(row[3])
    doc["analysis"] = None if row[4] is None else json.loads(row[4])
    return Trade.from_doc(doc)


_ALERT_INSERT = (
    "INSERT OR IGNORE INTO alerts (id, dedupe_key, wallet, condition_id, created_at, status,"
    " attempts, next_attempt_at, locked_until, attempt_id, last_error, discord_message_id,"
    " sent_at, doc, trade_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _alert_row(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.id,
        alert.dedupe_key,
        alert.wallet,
        alert.condition_id,
        alert.created_at,
        alert.status,
        alert.attempts,
        alert.next_attempt_at,
        alert.locked_until,
        alert.attempt_id,
        alert.last_error,
        alert.discord_message_id,
        alert.sent_at,
        json.dumps(alert.to_doc()),
        alert.trade_time,
    )


def _insert_alert(conn: sqlite3.Connection, row: tuple[Any, ...]) -> bool:
    return conn.execute(_ALERT_INSERT, row).rowcount > 0


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store file written by an earlier version up to date (idempotent; under the
    write lock, so processes opening the same old file at once migrate it once)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(alerts)")}
        if "trade_time" not in columns:  # cooldowns moved from wall-clock to trade time
            conn.execute("ALTER TABLE alerts ADD COLUMN trade_time REAL NOT NULL DEFAULT 0")
            conn.execute(
                "UPDATE alerts SET trade_time ="
                " COALESCE(json_extract(doc, '$.summary.timestamp'), 0)"
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _get_alert(conn: sqlite3.Connection, alert_id: str) -> Alert | None:
    row = conn.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return None if row is None else _alert(row)


def _alert(row: Sequence[Any]) -> Alert:
    doc = json.loads(row[0])
    keys = (
        "status",
        "attempts",
        "nextAttemptAt",
        "lockedUntil",
        "attemptId",
        "lastError",
        "discordMessageId",
        "sentAt",
    )
    doc.update(zip(keys, row[1:], strict=True))
    return Alert.from_doc(doc)
