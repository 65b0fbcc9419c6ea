"""Anomaly batch on the embedded store: 10,000 unchecked trades (the job's timeout is 45 s).

Run: ``.venv/bin/python benchmarks/domain_anomaly.py [--trades N] [--file]`` (not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from polyjobs.polymarket.anomaly import AnomalyDetector
from polyjobs.polymarket.config import AnomalyThresholds, WhaleThresholds
from polyjobs.polymarket.models import Alert
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.whales import WhaleDetector

sys.path.insert(0, str(Path(__file__).parent))
from domain_whales import trades


async def run(count: int, path: str) -> None:
    store = SqliteStore(path)
    await store.open()
    history = trades(count * 5, 2000, seed=1)
    await store.add_trades(history)
    await WhaleDetector(store, WhaleThresholds()).update()
    await store.mark_checked({t.trade_key: None for t in history}, at=time.time())
    fresh = trades(count, 3000, seed=2)
    now = time.time()
    for t in fresh:
        t.timestamp = now - 60
    await store.add_trades(fresh)
    enqueued: list[Alert] = []

    async def enqueue(alert: Alert) -> None:
        enqueued.append(alert)

    started = time.perf_counter()
    pending = await store.unchecked_trades(now - 6 * 3600, 10_000)
    result = await AnomalyDetector(store, AnomalyThresholds(), enqueue).check_batch(pending)
    took = time.perf_counter() - started
    await store.close()
    print(f"anomaly batch over {len(pending)} trades: {took:.2f}s {result.to_json()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades", type=int, default=10_000)
    parser.add_argument("--file", action="store_true", help="a SQLite file instead of :memory:")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/bench.db" if args.file else ":memory:"
        asyncio.run(run(args.trades, path))


if __name__ == "__main__":
    main()
