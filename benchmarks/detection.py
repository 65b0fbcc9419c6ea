"""Detection quality of the whale/anomaly detector, on a labeled set it builds itself.

Run: ``.venv/bin/python benchmarks/detection.py [--seed 13] [--days 10]`` (not a test).

The set (deterministic for a seed; its times end at the moment the benchmark starts, so
"older than 6 hours" means what it says) holds steady background wallets trading small
amounts and planted patterns, each with the outcome a reader wants:

| pattern | what | expected |
|---|---|---|
| `large_trade` | one $10k-$80k trade by a wallet with a long history | one alert |
| `fresh_long_shot` | a wallet's first trade: a $5k-$9.5k BUY at 0.03-0.15 | one alert |
| `spaced_repeat` | two such long shots by one wallet on one market, 1-3 h apart | one alert each |
| `burst_over_10k` | 5-12 buys of $10k-$30k by one wallet on one market within 10 min | one alert |
| `burst_under_10k` | the same, long shots of $5k-$9.5k by a new wallet | one alert |
| `backlog` | fresh long shots 7-19 h before the end (older than the old 6 h window) | one alert |
| `noise_fill` | a $10k-$50k fill at 0.95-0.99 (settlement sweeps) | no alert |
| `background` | steady wallets, trades of $5-$900 | no alert |

All of it is replayed once through the whole pipeline with the default settings
(:func:`polyjobs.processors.replay.run_replay`: ingest, analysis of the large trades, anomaly
batches, whale update, alerts), then every alert is matched to its pattern by transaction
hash. Per pattern: *recall* = events with an alert / events; *precision* = events with an
alert / alerts on the pattern's trades (a second alert on one event counts against it);
*duplicates* = alerts beyond the first per event (all inside one cooldown: an event lasts at
most 10 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyjobs.polymarket.models import Alert
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.processors.replay import ReplayRequest, run_replay

HOUR, MINUTE = 3600, 60
EXPECT_ALERT = (
    "large_trade",
    "fresh_long_shot",
    "spaced_repeat",
    "burst_over_10k",
    "burst_under_10k",
    "backlog",
)
EXPECT_NONE = ("noise_fill", "background")


@dataclass
class Labeled:
    rows: list[dict[str, Any]]
    events: dict[str, list[str]]  # event id -> its transaction hashes
    pattern_of: dict[str, str]  # event id -> pattern
    event_of_tx: dict[str, str]  # transaction hash -> event id


class Builder:
    def __init__(self, seed: int, days: int, end: int) -> None:
        self.rng = random.Random(seed)
        self.seed, self.days, self.end = seed, days, end
        self.start = end - days * 24 * HOUR
        self.rows: list[dict[str, Any]] = []
        self.events: dict[str, list[str]] = {}
        self.pattern_of: dict[str, str] = {}
        self.n = 0
        self.markets = [self._hex(f"market{i}", 64) for i in range(60)]
        self.steady = [self._hex(f"steady{i}", 40) for i in range(200)]

    def _hex(self, tag: str, width: int) -> str:
        return "0x" + hashlib.sha256(f"{self.seed}-{tag}".encode()).hexdigest()[:width]

    def trade(self, wallet: str, market: str, usdc: float, price: float, ts: float) -> str:
        self.n += 1
        tx = "0x" + f"{self.seed:08x}{self.n:056x}"
        self.rows.append(
            {
                "proxyWallet": wallet,
                "side": "BUY",
                "asset": str(int(market[2:18], 16)),
                "conditionId": market,
                "size": round(usdc / price, 4),
                "price": round(price, 4),
                "timestamp": int(ts),
                "title": f"Market {market[2:8]}",
                "slug": f"market-{market[2:8]}",
                "eventSlug": f"event-{market[2:6]}",
                "outcome": "Yes",
                "outcomeIndex": 0,
                "pseudonym": f"Wallet-{wallet[2:6]}",
                "transactionHash": tx,
            }
        )
        return tx

    def event(self, pattern: str, txs: list[str]) -> None:
        name = f"{pattern}-{len([p for p in self.pattern_of.values() if p == pattern])}"
        self.events[name] = txs
        self.pattern_of[name] = pattern

    def when(self, low_h: float, high_h: float) -> float:
        """A time between ``low_h`` and ``high_h`` hours before the end."""
        return self.end - self.rng.uniform(low_h, high_h) * HOUR

    def background(self, count: int) -> None:
        txs = []
        for _ in range(count):
            wallet = self.rng.choice(self.steady)
            market = self.rng.choice(self.markets)
            ts = self.rng.uniform(self.start, self.end)
            txs.append(
                self.trade(wallet, market, self.rng.uniform(5, 900), self.rng.uniform(0.2, 0.9), ts)
            )
        self.event("background", txs)

    def new_wallet(self, tag: str) -> str:
        return self._hex(tag, 40)

    def single(
        self,
        pattern: str,
        wallet: str,
        usdc: tuple[float, float],
        price: tuple[float, float],
        hours_ago: tuple[float, float],
        market: str | None = None,
    ) -> None:
        market = market or self.rng.choice(self.markets)
        tx = self.trade(
            wallet, market, self.rng.uniform(*usdc), self.rng.uniform(*price), self.when(*hours_ago)
        )
        self.event(pattern, [tx])

    def plant(self) -> None:
        span_h = self.days * 24
        for i in range(20):  # by established wallets, each on a market of its own
            market = self.markets[40 + i]
            self.single(
                "large_trade", self.steady[i], (10e3, 80e3), (0.3, 0.8), (1, span_h - 48), market
            )
        for i in range(20):
            self.single(
                "fresh_long_shot",
                self.new_wallet(f"fresh{i}"),
                (5e3, 9.5e3),
                (0.03, 0.15),
                (0.2, 6),
            )
        for i in range(15):
            self.single(
                "backlog", self.new_wallet(f"backlog{i}"), (5e3, 9.5e3), (0.03, 0.15), (7, 19)
            )
        for i in range(10):  # two long shots on one market, 1-3 hours apart: two alerts
            wallet, market = self.new_wallet(f"again{i}"), self.rng.choice(self.markets)
            first = self.rng.uniform(4, span_h - 4)
            later = first - self.rng.uniform(1, 3)
            for hours in (first, later):
                self.single(
                    "spaced_repeat", wallet, (5e3, 9.5e3), (0.05, 0.15), (hours, hours), market
                )
        for i in range(10):
            self.burst(f"bigburst{i}", "burst_over_10k", 10_000, 30_000, (0.3, 0.8))
        for i in range(10):
            self.burst(f"smallburst{i}", "burst_under_10k", 5_000, 9_500, (0.05, 0.18))
        for i in range(20):
            self.single(
                "noise_fill",
                self.new_wallet(f"settler{i}"),
                (10e3, 50e3),
                (0.95, 0.99),
                (1, span_h),
            )

    def burst(
        self, tag: str, pattern: str, low: float, high: float, prices: tuple[float, float]
    ) -> None:
        wallet, market = self.new_wallet(tag), self.rng.choice(self.markets)
        first = self.when(1, self.days * 24 - 1)
        count = self.rng.randint(5, 12)
        txs = [
            self.trade(
                wallet,
                market,
                self.rng.uniform(low, high),
                self.rng.uniform(*prices),
                first + k * (10 * MINUTE) / count,
            )
            for k in range(count)
        ]
        self.event(pattern, txs)

    def build(self, background: int) -> Labeled:
        self.background(background)
        self.plant()
        self.rows.sort(key=lambda r: (r["timestamp"], r["transactionHash"]))
        event_of_tx = {tx: name for name, txs in self.events.items() for tx in txs}
        return Labeled(self.rows, self.events, self.pattern_of, event_of_tx)


def score(data: Labeled, alerts: list[Alert]) -> list[dict[str, Any]]:
    per_event: Counter[str] = Counter()
    for alert in alerts:
        per_event[data.event_of_tx[alert.summary["transactionHash"]]] += 1
    table = []
    for pattern in (*EXPECT_ALERT, *EXPECT_NONE):
        events = [e for e, p in data.pattern_of.items() if p == pattern]
        alerted = sum(1 for e in events if per_event[e])
        count = sum(per_event[e] for e in events)
        trades = sum(len(data.events[e]) for e in events)
        row: dict[str, Any] = {
            "pattern": pattern,
            "events": None if pattern == "background" else len(events),
            "trades": trades,
            "alerts": count,
        }
        if pattern in EXPECT_ALERT:
            row.update(
                expect="1 alert",
                alerted=alerted,
                recall=alerted / len(events),
                precision=alerted / count if count else 0.0,
                duplicates=count - alerted,
            )
        else:
            row.update(
                expect="no alert", alerted=alerted, recall=None, precision=None, duplicates=None
            )
        table.append(row)
    return table


COLUMNS = (
    ("pattern", 17),
    ("events", 6),
    ("trades", 6),
    ("expect", 9),
    ("alerts", 6),
    ("recall", 6),
    ("precision", 9),
    ("duplicates", 10),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def show(table: list[dict[str, Any]]) -> None:
    print("| " + " | ".join(name.ljust(width) for name, width in COLUMNS) + " |")
    print("|" + "|".join("-" * (width + 2) for _, width in COLUMNS) + "|")
    for row in table:
        cells = (_cell(row[name]).ljust(width) for name, width in COLUMNS)
        print("| " + " | ".join(cells) + " |")


async def run(seed: int, days: int, background: int, as_json: bool) -> None:
    data = Builder(seed, days, int(time.time())).build(background)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labeled.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in data.rows))
        url = f"sqlite:///{tmp}/store.db"
        started = time.perf_counter()
        summary = await run_replay(ReplayRequest(path, store_url=url), {}, sink=Silent())
        took = time.perf_counter() - started
        store = SqliteStore.from_url(url)
        await store.open()
        alerts = await store.list_alerts(limit=1_000_000)
        unchecked = await store.count_unchecked()
        await store.close()
    table = score(data, alerts)
    if as_json:
        print(json.dumps({"seed": seed, "summary": summary.to_json(), "table": table}, indent=2))
        return
    print(
        f"detection benchmark: seed {seed}, {days} days, {len(data.rows)} trades,"
        f" {len(data.events) - 1} planted events, default settings"
    )
    print(
        f"replayed in {took:.1f}s: {summary.checked} checked, {unchecked} left unchecked,"
        f" {summary.alerts} alerts, {summary.suppressed} held back by the cooldown"
    )
    print()
    show(table)


class Silent:
    """An alert sink that delivers nowhere (the alerts are read back from the store)."""

    key = "benchmark"

    async def send(self, alert: Alert) -> str | None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--background", type=int, default=12_000, help="background trades")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.seed, args.days, args.background, args.json))


if __name__ == "__main__":
    main()
