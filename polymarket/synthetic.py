"""Synthetic Polymarket trades for demos and tests: deterministic for a seed.

:func:`generate` makes a few thousand Data API v1 rows over a few hours, across a few dozen
markets and a few hundred wallets. Ordinary trades stay small (under $900, below every
anomaly threshold); the planted ones are listed in :attr:`Synthetic.planted` with what the
detectors should make of them:

- ``whale``: wallets placing several $12k-$60k trades (large_trade; flagged as whales);
- ``fresh_long_shot``: a wallet never seen before buying $6k-$9k of an outcome priced <= 0.12
  (fresh_wallet + long_shot);
- ``size_vs_wallet``: a wallet with a history of ~$40 trades placing one $4,000 trade;
- ``size_vs_market``: a $2,500 trade in the thinnest market (a large share of its volume);
- ``settlement_noise``: a $20,000 fill at 0.97, which the noise filter must *not* alert on.

``examples/generate_trades.py`` writes them to ``examples/trades.jsonl`` (and the planted list
to ``examples/trades.planted.json``); ``polyjobs start --demo`` replays them.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SEED = 7
START_TS = 1_767_484_800  # 2026-01-04 00:00 UTC
SPAN = 4 * 3600
N_MARKETS = 36
N_WALLETS = 300
N_TRADES = 3000

_ADJ = "Quiet Bold Lucky Silent Rapid Amber Misty Iron Golden Hidden Brave Calm Swift Noble".split()
_NOUN = "Harbor Falcon River Otter Comet Maple Summit Lantern Meadow Raven Cedar Tide".split()
_SUBJECTS = [
    "the Fed cut rates",
    "Bitcoin close above $120k",
    "the Lakers win the title",
    "a ceasefire be announced",
    "SpaceX launch Starship",
    "the bill pass the Senate",
    "Ethereum flip $5k",
    "the CEO resign",
    "Team A win the final",
    "the album top the charts",
    "inflation print above 3%",
    "the merger close",
]
_WHEN = ["by March 31", "in January", "this week", "before the election", "by June 30", "in Q1"]


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass(slots=True)
class _Market:
    condition_id: str
    assets: tuple[str, str]
    title: str
    slug: str
    event_slug: str
    price: float  # of "Yes"
    weight: float


@dataclass(slots=True)
class _Wallet:
    address: str
    pseudonym: str
    weight: float
    scale: float  # typical notional, USDC


@dataclass(slots=True)
class Synthetic:
    """The generated rows (sorted by timestamp) and the planted anomalies."""

    seed: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    planted: list[dict[str, Any]] = field(default_factory=list)

    def write(self, trades_path: Path, planted_path: Path | None = None) -> None:
        lines = (json.dumps(r, separators=(",", ":")) for r in self.rows)
        trades_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if planted_path is not None:
            doc = {
                "seed": self.seed,
                "file": trades_path.name,
                "note": "planted anomalies: 'expect' says whether an alert must be raised",
                "planted": self.planted,
            }
            planted_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


class _Builder:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.out = Synthetic(seed)
        self.tx = 0
        self.markets = [self._market(i) for i in range(N_MARKETS)]
        self.wallets = [self._wallet(f"w{i}") for i in range(N_WALLETS)]

    def _market(self, i: int) -> _Market:
        rng = self.rng
        subject, when = _SUBJECTS[i % len(_SUBJECTS)], _WHEN[(i * 7 + self.seed) % len(_WHEN)]
        title = f"Will {subject} {when}?"
        if i >= len(_SUBJECTS):
            title = f"Will {subject} {when} (round {i // len(_SUBJECTS) + 1})?"
        slug = "-".join(title.lower().replace("?", "").replace("$", "").split())[:60]
        cid = "0x" + _hex(f"{self.seed}-market-{i}", 64)
        assets = (
            str(int(_hex(f"{cid}-yes", 60), 16)),
            str(int(_hex(f"{cid}-no", 60), 16)),
        )
        weight = 1.0 / (i + 1) ** 0.9  # a few busy markets, a long thin tail
        return _Market(
            cid, assets, title, slug, f"event-{slug[:30]}", rng.uniform(0.1, 0.9), weight
        )

    def _wallet(self, tag: str) -> _Wallet:
        rng = self.rng
        address = "0x" + _hex(f"{self.seed}-wallet-{tag}", 40)
        pseudonym = f"{rng.choice(_ADJ)}-{rng.choice(_NOUN)}"
        return _Wallet(address, pseudonym, rng.lognormvariate(0, 1.0), rng.lognormvariate(3.5, 0.7))

    def row(
        self,
        wallet: _Wallet,
        market: _Market,
        ts: int,
        notional: float,
        *,
        side: str = "BUY",
        outcome: int | None = None,
        price: float | None = None,
    ) -> dict[str, Any]:
        rng = self.rng
        if outcome is None:
            outcome = 0 if rng.random() < 0.5 else 1
        if price is None:
            base = market.price if outcome == 0 else 1 - market.price
            price = min(0.99, max(0.01, base + rng.gauss(0, 0.02)))
        price = round(price, 3)
        self.tx += 1
        row = {
            "proxyWallet": wallet.address,
            "side": side,
            "asset": market.assets[outcome],
            "conditionId": market.condition_id,
            "size": round(notional / price, 2),
            "price": price,
            "timestamp": ts,
            "title": market.title,
            "slug": market.slug,
            "icon": "",
            "eventSlug": market.event_slug,
            "outcome": "Yes" if outcome == 0 else "No",
            "outcomeIndex": outcome,
            "name": "",
            "pseudonym": wallet.pseudonym,
            "bio": "",
            "profileImage": "",
            "profileImageOptimized": "",
            "transactionHash": "0x" + _hex(f"{self.seed}-tx-{self.tx}", 64),
        }
        self.out.rows.append(row)
        return row

    def ts(self, low: float = 0.0, high: float = 1.0) -> int:
        return START_TS + int(self.rng.uniform(low, high) * SPAN)

    def background(self) -> None:
        rng = self.rng
        mweights = [m.weight for m in self.markets]
        wweights = [w.weight for w in self.wallets]
        for _ in range(N_TRADES):
            market = rng.choices(self.markets, mweights)[0]
            wallet = rng.choices(self.wallets, wweights)[0]
            notional = min(900.0, max(1.0, wallet.scale * rng.lognormvariate(0, 0.8)))
            side = "BUY" if rng.random() < 0.7 else "SELL"
            self.row(wallet, market, self.ts(), round(notional, 2), side=side)

    def plant(self, kind: str, wallet: _Wallet, rows: list[dict[str, Any]], expect: str) -> None:
        self.out.planted.append(
            {
                "kind": kind,
                "wallet": wallet.address,
                "pseudonym": wallet.pseudonym,
                "expect": expect,
                "transactionHashes": [r["transactionHash"] for r in rows],
                "usdc": [round(r["size"] * r["price"], 2) for r in rows],
            }
        )

    def planted(self) -> None:
        rng = self.rng
        for i in range(3):
            whale = self._wallet(f"whale{i}")
            markets = rng.sample(self.markets[:12], 4)
            big = [
                self.row(whale, m, self.ts(0.05, 0.95), round(rng.uniform(12_000, 60_000), 2))
                for m in markets
            ]
            self.plant("whale", whale, big, "alert")
        for i in range(3):
            fresh = self._wallet(f"fresh{i}")
            market = self.markets[rng.randrange(len(self.markets))]
            price = rng.uniform(0.04, 0.12)
            shot = self.row(
                fresh, market, self.ts(0.5, 0.95), round(rng.uniform(6_000, 9_000), 2), price=price
            )
            self.plant("fresh_long_shot", fresh, [shot], "alert")
        for i in range(2):
            steady = self._wallet(f"steady{i}")
            market = self.markets[rng.randrange(len(self.markets))]
            for _ in range(15):
                self.row(steady, market, self.ts(0.0, 0.6), round(rng.uniform(30, 50), 2))
            jump = self.row(steady, market, self.ts(0.7, 0.95), 4_000.0)
            self.plant("size_vs_wallet", steady, [jump], "alert")
        thin = self.markets[-1]
        mover = self._wallet("mover")
        self.row(mover, self.markets[0], self.ts(0.0, 0.3), 120.0)
        move = self.row(mover, thin, self.ts(0.6, 0.9), 2_500.0)
        self.plant("size_vs_market", mover, [move], "alert")
        settler = self._wallet("settler")
        fill = self.row(settler, self.markets[1], self.ts(0.4, 0.9), 20_000.0, price=0.97)
        self.plant("settlement_noise", settler, [fill], "no-alert")


def generate(seed: int = DEFAULT_SEED) -> Synthetic:
    """The deterministic synthetic trade set for ``seed``."""
    builder = _Builder(seed)
    builder.background()
    builder.planted()
    out = builder.out
    out.rows.sort(key=lambda r: (r["timestamp"], r["transactionHash"]))
    return out
