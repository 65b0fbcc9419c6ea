"""WhaleDetector and AnomalyDetector on both stores (SQLite in memory, mongomock-ng)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import mongomock_ng
import pytest

from polyjobs.polymarket.anomaly import DISCLAIMER, AnomalyDetector, compute_signals
from polyjobs.polymarket.config import AnomalyThresholds, WhaleThresholds
from polyjobs.polymarket.models import Alert, WalletHistory
from polyjobs.polymarket.mongo_store import MongoStore
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.store import Store
from polyjobs.polymarket.testing import make_trade
from polyjobs.polymarket.whales import WATERMARK_KEY, WhaleDetector

NOW = 1_767_484_800.0
W1, W2, W3 = ("0x" + c * 40 for c in "123")
M1, M2 = ("0x" + c * 64 for c in "ab")


@pytest.fixture(params=["sqlite", "mongomock-ng"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    made: Store
    if request.param == "sqlite":
        made = SqliteStore(":memory:")
    else:
        made = MongoStore(mongomock_ng.MongoClient, "detectors")
    await made.open()
    try:
        yield made
    finally:
        await made.close()


# -- whales ----------------------------------------------------------------------------------
async def test_whale_update_batches_thresholds_and_watermark(store: Store) -> None:
    await store.add_trades(
        [
            make_trade(wallet=W1, tx="0x1", size=120_000, price=0.5, timestamp=NOW, ingested_at=1),
            make_trade(wallet=W2, tx="0x2", size=100, price=0.5, timestamp=NOW, ingested_at=1),
            make_trade(wallet=W3, tx="0x3", size=10, price=0.5, timestamp=NOW, ingested_at=1),
        ]
    )
    progress: list[dict[str, int]] = []

    async def on_progress(p: dict[str, int]) -> None:
        progress.append(p)

    detector = WhaleDetector(store, WhaleThresholds())
    result = await detector.update(batch_size=2, on_progress=on_progress, now=NOW)
    assert result.to_json()["walletsUpdated"] == 3 and result.errors == 0
    assert result.whales == 1 and result.batches == 2
    assert [p["batches"] for p in progress] == [1, 2]
    wallets = await store.get_wallets([W1, W2])
    assert wallets[W1].is_whale and wallets[W1].whale_since == NOW
    assert wallets[W1].whale_reasons == ["volume30d>=50000", "maxTrade>=10000"]
    assert not wallets[W2].is_whale
    assert await store.get_state(WATERMARK_KEY) == {"lastIngestedAt": NOW}

    # only wallets with trades ingested since the watermark are recomputed
    await store.add_trades([make_trade(wallet=W1, tx="0x9", size=2, ingested_at=NOW + 5)])
    again = await detector.update(batch_size=2, now=NOW + 10)
    assert again.wallets_updated == 1
    w1 = (await store.get_wallets([W1]))[W1]
    assert w1.trade_count == 2 and w1.whale_since == NOW  # still a whale since the first run
    full = await detector.update(batch_size=1000, full=True, now=NOW + 20)
    assert full.wallets_updated == 3


# -- anomaly signals -------------------------------------------------------------------------
def test_signals_carry_value_and_threshold() -> None:
    limits = AnomalyThresholds()
    trade = make_trade(size=200_000, price=0.075, timestamp=NOW)  # $15k long-shot BUY
    names = {s.name: s for s in compute_signals(trade, limits, wallet=None)}
    assert set(names) == {"large_trade", "fresh_wallet", "long_shot"}
    assert names["large_trade"].value == pytest.approx(15_000)
    assert names["large_trade"].threshold == 10_000
    assert names["long_shot"].value == 0.075 and names["long_shot"].threshold == 0.20


def test_relative_signals() -> None:
    limits = AnomalyThresholds()
    history = WalletHistory(trade_count=50, volume=50 * 200.0, first_seen=NOW - 90 * 86400)
    trade = make_trade(wallet=W1, size=6_000, price=0.5, timestamp=NOW)  # $3k
    names = {s.name for s in compute_signals(trade, limits, history, market_volume=100_000)}
    assert names == {"size_vs_wallet", "size_vs_market"}
    small = make_trade(wallet=W1, size=100, price=0.5, timestamp=NOW)
    assert compute_signals(small, limits, history, market_volume=100) == []


def _detector(store: Store, sent: list[Alert], **limits: Any) -> AnomalyDetector:
    async def enqueue(alert: Alert) -> None:
        sent.append(alert)

    return AnomalyDetector(store, AnomalyThresholds(**limits), enqueue, clock=lambda: NOW)


async def test_batch_dedupes_filters_and_cools_down(store: Store) -> None:
    trades = [
        make_trade(wallet=W1, market=M1, tx="0x1", size=200_000, price=0.075, timestamp=NOW),
        make_trade(wallet=W1, market=M1, tx="0x2", size=30_000, price=0.5, timestamp=NOW + 1),
        make_trade(wallet=W2, market=M1, tx="0x3", size=10_000, price=0.97, timestamp=NOW + 2),
        make_trade(wallet=W3, market=M2, tx="0x4", size=10, price=0.5, timestamp=NOW + 3),
    ]
    await store.add_trades(trades)
    enqueued: list[Alert] = []
    detector = _detector(store, enqueued)
    result = await detector.check_batch(await store.unchecked_trades(0, 100))
    assert result.to_json() == {
        "checked": 4,
        "detected": 2,
        "alerts": 1,
        "raised": 1,
        "suppressed": 1,
        "skipped": 0,
        "signals": {"fresh_wallet": 1, "large_trade": 1, "long_shot": 1},
    }
    assert len(enqueued) == 1
    alert = await store.get_alert(enqueued[0].id)
    assert alert is not None and alert.trade_key == trades[0].trade_key
    assert alert.trade_time == NOW and alert.priority == "HIGH"
    assert alert.summary["note"] == DISCLAIMER and "not trading advice" in DISCLAIMER
    assert await store.unchecked_trades(0, 100) == []
    cooled = await store.get_trade(trades[1].trade_key)
    assert cooled is not None and cooled.anomaly is not None
    assert cooled.anomaly["suppressed"] == "cooldown" and cooled.anomaly["flagged"]
    assert cooled.anomaly["cooldownAlertId"] == alert.id
    filtered = await store.get_trade(trades[2].trade_key)
    assert filtered is not None and filtered.anomaly is not None
    assert filtered.anomaly["filtered"] == "price>=0.95"

    # checking the same trade again raises no second alert (same dedupe key, same id)
    [again] = await detector.check([trades[0]])
    assert again.alert_id == alert.id and not again.raised
    assert len(enqueued) == 2 and enqueued[1].id == alert.id  # re-enqueue: same job id


async def test_a_large_trade_is_held_back_by_the_cooldown_too(store: Store) -> None:
    """No path skips the cooldown: $30k twice on one wallet and market a minute apart."""
    first = make_trade(wallet=W1, market=M1, tx="0x1", size=60_000, price=0.5, timestamp=NOW)
    second = make_trade(wallet=W1, market=M1, tx="0x2", size=60_000, price=0.5, timestamp=NOW + 60)
    await store.add_trades([first, second])
    enqueued: list[Alert] = []
    detector = _detector(store, enqueued)
    [one] = await detector.check([first])
    [two] = await detector.check([second])
    assert one.raised and one.alert_id is not None
    assert two.alert_id is None and two.suppressed == "cooldown"
    assert two.cooldown_alert_id == one.alert_id
    assert [a.trade_key for a in enqueued] == [first.trade_key]


async def test_cooldown_is_measured_in_trade_time(store: Store) -> None:
    """Checked at the same wall-clock moment (a drained backlog): trades 2 h apart both alert,
    trades 10 s apart once."""
    trades = [
        make_trade(wallet=W1, market=M1, tx="0x1", size=60_000, price=0.5, timestamp=NOW),
        make_trade(wallet=W1, market=M1, tx="0x2", size=60_000, price=0.5, timestamp=NOW + 10),
        make_trade(wallet=W1, market=M1, tx="0x3", size=60_000, price=0.5, timestamp=NOW + 7200),
    ]
    await store.add_trades(trades)
    enqueued: list[Alert] = []
    result = await _detector(store, enqueued).check_batch(trades)
    assert (result.raised, result.suppressed) == (2, 1)
    assert [a.trade_key for a in enqueued] == [trades[0].trade_key, trades[2].trade_key]


async def test_wallet_history_is_the_store_before_the_trade(store: Store) -> None:
    """60 earlier trades over 60 h and no whale update yet: the wallet is not "fresh"; its
    first trade is, and the history excludes later trades."""
    hour = 3600.0
    history = [
        make_trade(
            wallet=W1, market=M2, tx=f"0xa{i}", size=200, price=0.5, timestamp=NOW + i * hour
        )
        for i in range(60)
    ]
    big = make_trade(
        wallet=W1, market=M1, tx="0xb", size=40_000, price=0.5, timestamp=NOW + 61 * hour
    )
    later = make_trade(
        wallet=W1, market=M2, tx="0xc", size=10, price=0.5, timestamp=NOW + 62 * hour
    )
    await store.add_trades([*history, big, later])
    assert await store.get_wallets([W1]) == {}  # the whale update has not run
    detections = await _detector(store, []).check([big, history[0]])
    by_key = {d.trade_key: d for d in detections}
    names = {s.name: s for s in by_key[big.trade_key].signals}
    assert "fresh_wallet" not in names
    assert names["size_vs_wallet"].value == pytest.approx(200.0)  # $20k vs $100 average
    assert by_key[big.trade_key].wallet == WalletHistory(60, 6000.0, NOW)
    assert by_key[history[0].trade_key].wallet == WalletHistory(0, 0.0, None)


async def test_market_volume_is_the_24h_up_to_the_trade(store: Store) -> None:
    day = 86_400.0
    old = make_trade(wallet=W2, market=M1, tx="0x1", size=1000, price=0.5, timestamp=NOW)
    recent = make_trade(
        wallet=W2, market=M1, tx="0x2", size=100, price=0.5, timestamp=NOW + day + 10
    )
    mine = make_trade(wallet=W1, market=M1, tx="0x3", size=400, price=0.5, timestamp=NOW + day + 5)
    after = make_trade(
        wallet=W3, market=M1, tx="0x4", size=9000, price=0.5, timestamp=NOW + day + 20
    )
    await store.add_trades([old, recent, mine, after])
    detections = await _detector(store, []).check([old, mine, recent, after])
    volumes = {d.trade_key: d.market_volume for d in detections}
    assert volumes[old.trade_key] == pytest.approx(500)
    assert volumes[mine.trade_key] == pytest.approx(200)  # `old` left the window; not `recent`
    assert volumes[recent.trade_key] == pytest.approx(250)
    assert volumes[after.trade_key] == pytest.approx(4750)
    # the same values checked one by one, in another order
    for trade in (after, mine, old):
        [alone] = await _detector(store, []).check([trade])
        assert alone.market_volume == volumes[trade.trade_key]


async def test_an_age_limit_skips_old_trades_and_counts_them(store: Store) -> None:
    old = make_trade(wallet=W1, market=M1, tx="0x1", size=60_000, price=0.5, timestamp=NOW - 7200)
    new = make_trade(wallet=W2, market=M1, tx="0x2", size=60_000, price=0.5, timestamp=NOW - 60)
    await store.add_trades([old, new])
    enqueued: list[Alert] = []
    result = await _detector(store, enqueued, max_age=3600).check_batch([old, new])
    assert (result.checked, result.skipped, result.raised) == (2, 1, 1)
    stored = await store.get_trade(old.trade_key)
    assert stored is not None and stored.anomaly_checked and stored.anomaly is not None
    assert stored.anomaly["skipped"] == "older than 3600s" and not stored.anomaly["flagged"]
