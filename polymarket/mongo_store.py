"""The MongoDB store (pymongo): one collection per kind of record, indexed for its queries.

pymongo is synchronous here: every call runs in a thread (``asyncio.to_thread``), so the
processors stay async and the same code runs on mongomock-ng in tests. Indexes are created
at ``open()``; ``create_index`` is idempotent. Times are stored as epoch seconds (floats),
except ``expireAt`` (a date, for the TTL index).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from polyjobs.errors import BackendError, BackendUnavailableError
from polyjobs.polymarket.models import Alert, AlertStatus, Trade, WalletStats
from polyjobs.redact import redact_url

T = TypeVar("T")
ALERT_RETENTION = timedelta(days=30)
DUPLICATE_KEY = 11000


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
                [("timestamp", ASCENDING)],
                name="unchecked_by_ts",
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
                [("wallet", ASCENDING), ("conditionId", ASCENDING), ("createdAt", ASCENDING)]
            )
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

    async def unchecked_trades(self, since: float, limit: int) -> list[Trade]:
        def run() -> list[dict[str, Any]]:
            cursor = (
                self._db.transactions.find(
                    {"metadata.anomalyChecked": False, "timestamp": {"$gte": since}}
                )
                .sort([("timestamp", ASCENDING), ("_id", ASCENDING)])
                .limit(limit)
            )
            return list(cursor)

        return [Trade.from_doc(d) for d in await self._run(run)]

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

    async def recent_alert(self, wallet: str, condition_id: str, since: float) -> bool:
        query = {"wallet": wallet, "conditionId": condition_id, "createdAt": {"$gte": since}}
        doc = await self._run(partial(self._db.alerts.find_one, query, {"_id": 1}))
        return doc is not None

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
