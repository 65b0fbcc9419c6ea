"""Whale update on the embedded store: 100,000 trades over 10,000 wallets.

Run: ``.venv/bin/python benchmarks/domain_whales.py [--mongomock]`` (prints timings; not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from polyjobs.polymarket.config import WhaleThresholds
from polyjobs.polymarket.models import Trade
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.store import Store
from polyjobs.polymarket.whales import WhaleDetector


def trades(count: int, wallets: int, seed: int = 7) -> list[Trade]:
    rng = random.Random(seed)
    now = time.time()
    out = []
    for i in range(count):
        row = {
            "proxyWallet": f"0x{rng.randrange(wallets):040x}",
            "side": rng.choice(("BUY", "SELL")),
            "asset": str(rng.randrange(10**6)),
            "conditionId": f"0x{rng.randrange(500):064x}",
            "size": rng.lognormvariate(6, 1.5),
            "price": rng.uniform(0.01, 0.99),
            "timestamp": now - rng.uniform(0, 60 * 86400),
            "transactionHash": f"0x{i:064x}",
        }
        out.append(Trade.from_api(row, ingested_at=now))
    return out


async def run(store: Store, count: int, wallets: int) -> None:
    await store.open()
    batch = trades(count, wallets)
    started = time.perf_counter()
    for i in range(0, len(batch), 5000):
        await store.add_trades(batch[i : i + 5000])
    ingest = time.perf_counter() - started
    result = await WhaleDetector(store, WhaleThresholds()).update(batch_size=1000)
    await store.close()
    print(f"ingest {count} trades: {ingest:.2f}s")
    print(f"whale update: {result.to_json()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--mongomock", action="store_true", help="mongomock-ng instead of SQLite")
    args = parser.parse_args()
    store: Store
    if args.mongomock:
        import mongomock_ng

        from polyjobs.polymarket.mongo_store import MongoStore

        store = MongoStore(mongomock_ng.MongoClient, "bench")
    else:
        store = SqliteStore(":memory:")
    asyncio.run(run(store, args.trades, args.wallets))


if __name__ == "__main__":
    main()
