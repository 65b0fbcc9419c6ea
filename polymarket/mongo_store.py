"""The MongoDB store (pymongo): one collection per kind of record, indexed for its queries.

pymongo is synchronous here: every call runs in a thread (``asyncio.to_thread``), so the
processors stay async and the same code runs on mongomock-ng in tests. Indexes are created
at ``open()``; ``create_index`` is idempotent. Times are stored as epoch seconds (floats),
except ``expireAt`` (a date, for the TTL index). A trade's ``_id`` is its ``tradeKey``.

Cooldowns: MongoDB has no multi-document transactions on a standalone server, so "no alert
on this wallet and market within the cooldown" is decided on one document per wallet and
market (collection ``cooldowns``: the trade times of its alerts and a version), written with
a compare-and-set on the version: of two concurrent claims, the second one's write matches
nothing and it re-reads, sees the first claim, and backs off.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from polyjobs.errors import BackendError, BackendUnavailableError
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

T = TypeVar("T")
ALERT_RETENTION = timedelta(days=30)
DUPLICATE_KEY = 11000
CLAIM_RETRIES = 100  # compare-and-set rounds before a cooldown claim gives up
CLAIMS_KEPT = 500  # alert times kept per wallet and market (the newest)


class MongoStore:
    """The :class:`~polyjobs.polymarket.store.Store` on MongoDB.

    ``client_factory`` returns a ``pymongo.MongoClient`` (or a compatible fake such as
    ``mongomock_ng.MongoClient``); it is called at ``open()``, and the client closed at
    ``close()``.
    """

    def __init__(self, client_factory: Callable[[], Any], database: str = "polyjobs") -> None:
        self.client_factory = client_factory
        self.database = database
        self._client: Any = None
        self._db: Any = None
        # one cooldown claim at a time in this process (other processes: the compare-and-set)
        self._claim_lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str, database: str = "polyjobs") -> MongoStore:
        def factory() -> Any:
            from pymongo import MongoClient

            client: Any = MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)
            return client

        store = cls(factory, database)
        store._label = redact_url(uri)
        return store

    _label = "mongodb"

    def __repr__(self) -> str:
        return f"<MongoStore {self._label} db={self.database}>"

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._db is None:
            raise BackendUnavailableError(f"store {self._label} is not open")
        try:
            return await asyncio.to_thread(fn)
        except PyMongoError as exc:
            raise BackendError(f"MongoDB store {self._label}: {exc}") from None

    async def open(self) -> None:
        def run() -> None:
            client = self.client_factory()
            db = client.get_database(self.database)
            tx = db.transactions
            tx.create_index("tradeKey", unique=True)
            tx.create_index(
                [("timestamp", ASCENDING), ("_id", ASCENDING)],
                name="unchecked_in_order",
                partialFilterExpression={"metadata.anomalyChecked": False},
            )
            tx.create_index([("proxyWallet", ASCENDING), ("timestamp", DESCENDING)])
            tx.create_index([("conditionId", ASCENDING), ("timestamp", DESCENDING)])
            tx.create_index("transactionHash")
            tx.create_index([("ingestedAt", ASCENDING)])
            db.wallets.create_index([("isWhale", ASCENDING), ("stats.totalVolume", DESCENDING)])
            db.wallets.create_index([("statsComputedAt", ASCENDING)])
            db.alerts.create_index("dedupeKey", unique=True)
            db.alerts.create_index([("status", ASCENDING), ("nextAttemptAt", ASCENDING)])
            db.alerts.create_index(
                [("wallet", ASCENDING), ("conditionId", ASCENDING), ("tradeTime", ASCENDING)]
            )
            db.alerts.create_index([("createdAt", ASCENDING)])
            db.alerts.create_index("expireAt", expireAfterSeconds=0)
            self._client, self._db = client, db

        try:
            await asyncio.to_thread(run)
        except PyMongoError as exc:
            raise BackendUnavailableError(
                f"cannot open MongoDB store {self._label}: {exc}"
            ) from None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client, self._db = self._client, None, None
            await asyncio.to_thread(client.close)

    # -- trades ----------------------------------------------------------------------------
    async def add_trades(self, trades: Sequence[Trade]) -> int:
        """``insert_many(ordered=False)``: duplicates (code 11000) mean "already stored"."""
        if not trades:
            return 0
        docs = [{"_id": t.trade_key, **t.to_doc()} for t in trades]

        def run() -> int:
            try:
                result = self._db.transactions.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                return int(exc.details.get("nInserted", 0))
            return len(result.inserted_ids)

        return await self._run(run)

    async def get_trade(self, trade_key: str) -> Trade | None:
        doc = await self._run(partial(self._db.transactions.find_one, {"_id": trade_key}))
        return None if doc is None else Trade.from_doc(doc)

    async def get_trades(self, trade_keys: Sequence[str]) -> dict[str, Trade]:
        keys = list(dict.fromkeys(trade_keys))
        if not keys:
            return {}
        docs = await self._run(lambda: list(self._db.transactions.find({"_id": {"$in": keys}})))
        return {trade.trade_key: trade for trade in map(Trade.from_doc, docs)}

    async def unchecked_trades(
        self,
        since: float | None = None,
        limit: int = 1000,
        *,
        wallet: str | None = None,
        condition_id: str | None = None,
        until: TradeCursor | None = None,
    ) -> list[Trade]:
        query: dict[str, Any] = {"metadata.anomalyChecked": False}
        if since is not None:
            query["timestamp"] = {"$gte": since}
        if wallet is not None:
            query["proxyWallet"] = wallet
        if condition_id is not None:
            query["conditionId"] = condition_id
        if until is not None:
            query["$or"] = [
                {"timestamp": {"$lt": until[0]}},
                {"timestamp": until[0], "_id": {"$lte": until[1]}},
            ]

        def run() -> list[dict[str, Any]]:
            cursor = (
                self._db.transactions.find(query)
                .sort([("timestamp", ASCENDING), ("_id", ASCENDING)])
                .limit(limit)
            )
            return list(cursor)

        return [Trade.from_doc(d) for d in await self._run(run)]

    async def count_unchecked(self) -> int:
        query = {"metadata.anomalyChecked": False}
        return int(await self._run(partial(self._db.transactions.count_documents, query)))

    async def checked_counts(self, checked_since: float) -> dict[str, int]:
        def present(field: str) -> dict[str, Any]:
            return {"$sum": {"$cond": [{"$gt": [field, None]}, 1, 0]}}

        pipeline = [
            {
                "$match": {
                    "metadata.anomalyChecked": True,
                    "metadata.anomalyCheckedAt": {"$gte": checked_since},
                }
            },
            {
                "$group": {
                    "_id": None,
                    "checked": {"$sum": 1},
                    "detected": {"$sum": {"$cond": [{"$eq": ["$anomaly.flagged", True]}, 1, 0]}},
                    "suppressed": present("$anomaly.suppressed"),
                    "skipped": present("$anomaly.skipped"),
                }
            },
        ]
        rows = await self._run(lambda: list(self._db.transactions.aggregate(pipeline)))
        found = rows[0] if rows else {}
        return {k: int(found.get(k, 0)) for k in ("checked", "detected", "suppressed", "skipped")}

    async def mark_checked(self, results: Mapping[str, dict[str, Any] | None], at: float) -> int:
        if not results:
            return 0
        ops = [
            UpdateOne(
                {"_id": key, "metadata.anomalyChecked": False},
                {
                    "$set": {
                        "metadata.anomalyChecked": True,
                        "metadata.anomalyCheckedAt": at,
                        "anomaly": anomaly,
                    }
                },
            )
            for key, anomaly in results.items()
        ]
        result = await self._run(partial(self._db.transactions.bulk_write, ops, ordered=False))
        return int(result.modified_count)

    async def set_analysis(self, trade_key: str, analysis: dict[str, Any]) -> bool:
        result = await self._run(
            partial(
                self._db.transactions.update_one,
                {"_id": trade_key},
                {"$set": {"analysis": analysis}},
            )
        )
        return bool(result.matched_count)

    async def market_volumes(self, condition_ids: Sequence[str], since: float) -> dict[str, float]:
        pipeline = [
            {"$match": {"conditionId": {"$in": list(condition_ids)}, "timestamp": {"$gte": since}}},
            {"$group": {"_id": "$conditionId", "volume": {"$sum": "$usdcSize"}}},
        ]
        rows = await self._run(lambda: list(self._db.transactions.aggregate(pipeline)))
        return {r["_id"]: float(r["volume"]) for r in rows}

    # -- histories "as of" a trade ----------------------------------------------------------
    async def wallet_totals(
        self, wallets: Sequence[str], before: TradeCursor
    ) -> dict[str, WalletHistory]:
        pipeline = [
            {"$match": {"proxyWallet": {"$in": list(wallets)}, **_before(before)}},
            {
                "$group": {
                    "_id": "$proxyWallet",
                    "count": {"$sum": 1},
                    "volume": {"$sum": "$usdcSize"},
                    "first": {"$min": "$timestamp"},
                }
            },
        ]
        rows = await self._run(lambda: list(self._db.transactions.aggregate(pipeline)))
        return {
            r["_id"]: WalletHistory(int(r["count"]), float(r["volume"]), r["first"]) for r in rows
        }

    async def market_totals(
        self, markets: Sequence[str], since: float, before: TradeCursor
    ) -> dict[str, float]:
        match = {
            "conditionId": {"$in": list(markets)},
            "timestamp": {"$gte": since},
            **_before(before),
        }
        pipeline = [
            {"$match": match},
            {"$group": {"_id": "$conditionId", "volume": {"$sum": "$usdcSize"}}},
        ]
        rows = await self._run(lambda: list(self._db.transactions.aggregate(pipeline)))
        return {r["_id"]: float(r["volume"]) for r in rows}

    async def trade_points(
        self, wallets: Sequence[str], markets: Sequence[str], since: float, until: float
    ) -> list[TradePoint]:
        query = {
            "timestamp": {"$gte": since, "$lte": until},
            "$or": [
                {"proxyWallet": {"$in": list(wallets)}},
                {"conditionId": {"$in": list(markets)}},
            ],
        }
        fields = {"timestamp": 1, "proxyWallet": 1, "conditionId": 1, "usdcSize": 1}

        def run() -> list[dict[str, Any]]:
            cursor = self._db.transactions.find(query, fields).sort(
                [("timestamp", ASCENDING), ("_id", ASCENDING)]
            )
            return list(cursor)

        return [
            TradePoint(
                float(d["timestamp"]),
                d["_id"],
                d["proxyWallet"],
                d["conditionId"],
                float(d["usdcSize"]),
            )
            for d in await self._run(run)
        ]

    # -- wallets ---------------------------------------------------------------------------
    async def dirty_wallets(
        self, ingested_since: float | None, after: str, limit: int
    ) -> list[str]:
        match: dict[str, Any] = {"proxyWallet": {"$gt": after}}
        if ingested_since is not None:
            match["ingestedAt"] = {"$gte": ingested_since}
        pipeline = [
            {"$match": match},
            {"$group": {"_id": "$proxyWallet"}},
            {"$sort": {"_id": 1}},
            {"$limit": limit},
        ]
        rows = await self._run(lambda: list(self._db.transactions.aggregate(pipeline)))
        return [r["_id"] for r in rows]

    async def compute_wallet_stats(
        self, wallets: Sequence[str], since_30d: float
    ) -> list[WalletStats]:
        usdc = "$usdcSize"
        pipeline = [
            {"$match": {"proxyWallet": {"$in": list(wallets)}}},
            {
                "$group": {
                    "_id": "$proxyWallet",
                    "tradeCount": {"$sum": 1},
                    "totalVolume": {"$sum": usdc},
                    "buyVolume": {"$sum": {"$cond": [{"$eq": ["$side", "BUY"]}, usdc, 0]}},
                    "sellVolume": {"$sum": {"$cond": [{"$eq": ["$side", "SELL"]}, usdc, 0]}},
                    "volume30d": {
                        "$sum": {"$cond": [{"$gte": ["$timestamp", since_30d]}, usdc, 0]}
                    },
                    "maxTrade": {"$max": usdc},
                    "firstSeen": {"$min": "$timestamp"},
                    "lastSeen": {"$max": "$timestamp"},
                    "markets": {"$addToSet": "$conditionId"},
                    "pseudonym": {"$max": "$trader.pseudonym"},
                }
            },
            {"$addFields": {"marketCount": {"$size": "$markets"}}},
            {"$project": {"markets": 0}},
        ]
        rows = await self._run(lambda: list(self._db.transactions.aggregate(pipeline)))
        return [
            WalletStats(
                address=r["_id"],
                trade_count=int(r["tradeCount"]),
                total_volume=float(r["totalVolume"]),
                buy_volume=float(r["buyVolume"]),
                sell_volume=float(r["sellVolume"]),
                volume_30d=float(r["volume30d"]),
                max_trade=float(r["maxTrade"]),
                market_count=int(r["marketCount"]),
                first_seen=r["firstSeen"],
                last_seen=r["lastSeen"],
                pseudonym=r.get("pseudonym") or "",
            )
            for r in rows
        ]

    async def get_wallets(self, addresses: Sequence[str]) -> dict[str, WalletStats]:
        def run() -> list[dict[str, Any]]:
            return list(self._db.wallets.find({"_id": {"$in": list(addresses)}}))

        found = (WalletStats.from_doc(d) for d in await self._run(run))
        return {w.address: w for w in found}

    async def list_wallets(self, offset: int, limit: int, whales_only: bool) -> list[WalletStats]:
        query = {"isWhale": True} if whales_only else {}

        def run() -> list[dict[str, Any]]:
            cursor = (
                self._db.wallets.find(query)
                .sort([("stats.totalVolume", DESCENDING), ("_id", ASCENDING)])
                .skip(offset)
                .limit(limit)
            )
            return list(cursor)

        return [WalletStats.from_doc(d) for d in await self._run(run)]

    async def count_wallets(self, whales_only: bool) -> int:
        query = {"isWhale": True} if whales_only else {}
        return int(await self._run(lambda: self._db.wallets.count_documents(query)))

    async def upsert_wallets(self, wallets: Sequence[WalletStats]) -> None:
        if not wallets:
            return
        now = datetime.now(UTC)
        ops = []
        for wallet in wallets:
            doc = wallet.to_doc()
            address = doc.pop("_id")
            ops.append(
                UpdateOne(
                    {"_id": address},
                    {"$set": doc, "$setOnInsert": {"createdAt": now}},
                    upsert=True,
                )
            )
        await self._run(partial(self._db.wallets.bulk_write, ops, ordered=False))

    # -- job state -------------------------------------------------------------------------
    async def get_state(self, key: str) -> Any:
        doc = await self._run(partial(self._db.job_state.find_one, {"_id": key}))
        return None if doc is None else doc.get("value")

    async def set_state(self, key: str, value: Any) -> None:
        await self._run(
            partial(
                self._db.job_state.update_one,
                {"_id": key},
                {"$set": {"value": value}},
                upsert=True,
            )
        )

    # -- alerts ----------------------------------------------------------------------------
    async def insert_alert(self, alert: Alert) -> bool:
        def run() -> bool:
            try:
                self._db.alerts.insert_one(alert.to_doc())
            except DuplicateKeyError:
                return False
            return True

        return await self._run(run)

    async def get_alert(self, alert_id: str) -> Alert | None:
        doc = await self._run(partial(self._db.alerts.find_one, {"_id": alert_id}))
        return None if doc is None else Alert.from_doc(doc)

    async def raise_alert(self, alert: Alert, cooldown: float) -> RaisedAlert:
        return await self._run(partial(self._raise_alert, alert, cooldown))

    def _raise_alert(self, alert: Alert, cooldown: float) -> RaisedAlert:
        with self._claim_lock:
            if self._db.alerts.find_one({"_id": alert.id}, {"_id": 1}) is not None:
                return RaisedAlert("exists", alert.id)
            if cooldown > 0:
                holder = self._claim_cooldown(alert, cooldown)
                if holder is not None:
                    return RaisedAlert("cooldown", holder)
            try:
                self._db.alerts.insert_one(alert.to_doc())
            except DuplicateKeyError:
                return RaisedAlert("exists", alert.id)
            return RaisedAlert("inserted", alert.id)

    def _claim_cooldown(self, alert: Alert, cooldown: float) -> str | None:
        """Claim ``alert``'s trade time on its wallet and market; the id of the alert that
        holds the cooldown instead, if any."""
        key = f"{alert.wallet}|{alert.condition_id}"
        mine = {"t": alert.trade_time, "id": alert.id}
        for _ in range(CLAIM_RETRIES):
            doc = self._db.cooldowns.find_one({"_id": key})
            claims: list[dict[str, Any]] = list(doc["claims"]) if doc else []
            if any(c["id"] == alert.id for c in claims):
                return None  # claimed before, but its alert was not stored: store it now
            near = [c for c in claims if abs(float(c["t"]) - alert.trade_time) < cooldown]
            if near:
                return str(min(near, key=lambda c: float(c["t"]))["id"])
            claims = sorted([*claims, mine], key=lambda c: float(c["t"]))[-CLAIMS_KEPT:]
            if doc is None:
                try:
                    self._db.cooldowns.insert_one({"_id": key, "claims": claims, "version": 1})
                except DuplicateKeyError:
                    continue  # another claim created the document first: read it
                return None
            written = self._db.cooldowns.update_one(
                {"_id": key, "version": doc["version"]},
                {"$set": {"claims": claims}, "$inc": {"version": 1}},
            )
            if written.matched_count:
                return None
        raise BackendError(
            f"MongoDB store {self._label}: cooldown of {key} still contended "
            f"after {CLAIM_RETRIES} attempts"
        )

    async def list_alerts(self, created_since: float = 0.0, limit: int = 1000) -> list[Alert]:
        def run() -> list[dict[str, Any]]:
            cursor = (
                self._db.alerts.find({"createdAt": {"$gte": created_since}})
                .sort([("createdAt", ASCENDING), ("_id", ASCENDING)])
                .limit(limit)
            )
            return list(cursor)

        return [Alert.from_doc(d) for d in await self._run(run)]

    async def recent_alerts(self, offset: int, limit: int) -> list[Alert]:
        def run() -> list[dict[str, Any]]:
            cursor = (
                self._db.alerts.find({})
                .sort([("createdAt", DESCENDING), ("_id", DESCENDING)])
                .skip(offset)
                .limit(limit)
            )
            return list(cursor)

        return [Alert.from_doc(d) for d in await self._run(run)]

    async def count_alerts(self) -> int:
        return int(await self._run(lambda: self._db.alerts.count_documents({})))

    async def claim_alert(
        self, alert_id: str, now: float, lease: float, attempt_id: str
    ) -> Alert | None:
        query = {
            "_id": alert_id,
            "$or": [
                {"status": {"$in": ["pending", "retry"]}},
                {"status": "sending", "lockedUntil": {"$lt": now}},
            ],
        }
        update = {
            "$set": {"status": "sending", "lockedUntil": now + lease, "attemptId": attempt_id},
            "$inc": {"attempts": 1},
        }
        doc = await self._run(
            partial(
                self._db.alerts.find_one_and_update,
                query,
                update,
                return_document=ReturnDocument.AFTER,
            )
        )
        return None if doc is None else Alert.from_doc(doc)

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
        fields: dict[str, Any] = {
            "status": status,
            "lastError": error,
            "discordMessageId": message_id,
            "nextAttemptAt": next_attempt_at,
            "sentAt": now if status == "sent" else None,
            "lockedUntil": None,
        }
        if status in ("sent", "failed"):
            fields["expireAt"] = datetime.now(UTC) + ALERT_RETENTION  # wall clock: cleanup only
        result = await self._run(
            partial(
                self._db.alerts.update_one,
                {"_id": alert_id, "attemptId": attempt_id, "status": "sending"},
                {"$set": fields},
            )
        )
        return bool(result.modified_count)


def _before(cursor: TradeCursor) -> dict[str, Any]:
    """A filter: trades ordered before ``cursor`` (by timestamp, then trade key = ``_id``)."""
    ts, key = cursor
    return {"$or": [{"timestamp": {"$lt": ts}}, {"timestamp": ts, "_id": {"$lt": key}}]}
