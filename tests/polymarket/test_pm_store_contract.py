"""The store contract: every Store implementation passes these tests unchanged.

Mongo runs on mongomock-ng (an in-memory fake) by default; set POLYJOBS_TEST_MONGODB_URI to
also run the suite against a real MongoDB (it uses a throwaway database and drops it).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import mongomock_ng
import pytest

from polyjobs.polymarket.models import Alert, Signal, WalletStats
from polyjobs.polymarket.mongo_store import MongoStore
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.store import Store, open_store
from polyjobs.polymarket.testing import MARKET_A, WALLET_A, make_trade

REAL_MONGO = os.environ.get("POLYJOBS_TEST_MONGODB_URI")
WALLET_B = "0x" + "b" * 40
MARKET_B = "0x" + "2" * 64


def _real_mongo_store() -> MongoStore:
    from pymongo import MongoClient

    def factory() -> Any:
        return MongoClient(REAL_MONGO, serverSelectionTimeoutMS=3000)

    return MongoStore(factory, f"polyjobs_test_{uuid.uuid4().hex[:8]}")


STORES: dict[str, Callable[[Path], Store]] = {
    "sqlite-memory": lambda _: SqliteStore(":memory:"),
    "sqlite-file": lambda tmp: SqliteStore(str(tmp / "store.db")),
    "mongomock-ng": lambda _: MongoStore(mongomock_ng.MongoClient, "polyjobs_test"),
    "mongodb": lambda _: _real_mongo_store(),
}


@pytest.fixture(params=list(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "mongodb" and not REAL_MONGO:
        pytest.skip("real-MongoDB contract tests skipped: POLYJOBS_TEST_MONGODB_URI not set")
    made = STORES[request.param](tmp_path)
    await made.open()
    try:
        yield made
    finally:
        if request.param == "mongodb" and isinstance(made, MongoStore):
            made._client.drop_database(made.database)
        await made.close()


def _alert(
    key: str = "anomaly:v1:k1",
    wallet: str = WALLET_A,
    created: float = 100.0,
    *,
    market: str = MARKET_A,
    trade_time: float = 0.0,
) -> Alert:
    return Alert(
        dedupe_key=key,
        kind="anomaly",
        severity="high",
        trade_key=key.rsplit(":", 1)[-1],
        wallet=wallet,
        condition_id=market,
        signals=[Signal("large_trade", 15000.0, 10000.0)],
        score=0.7,
        trade_time=trade_time,
        created_at=created,
    )


async def test_the_same_trade_twice_is_stored_once(store: Store) -> None:
    trade = make_trade(size=200_000, price=0.075)
    assert await store.add_trades([trade, trade]) == 1
    assert await store.add_trades([trade]) == 0
    got = await store.get_trade(trade.trade_key)
    assert got is not None
    assert got.usdc_size == pytest.approx(15_000)
    assert got.proxy_wallet == WALLET_A and got.title.startswith("Will X")
    assert got.anomaly_checked is False
    assert await store.get_trade("nope") is None


async def test_many_trades_are_read_at_once(store: Store) -> None:
    trades = [make_trade(size=1000 + i, price=0.5, tx=f"0x0{i + 2}") for i in range(3)]
    await store.add_trades(trades[:2])
    keys = [t.trade_key for t in trades]
    got = await store.get_trades([*keys, keys[0], "nope"])
    assert sorted(got) == sorted(keys[:2])
    assert got[keys[1]].usdc_size == pytest.approx(trades[1].usdc_size)
    assert await store.get_trades([]) == {}


async def test_unchecked_trades_then_bulk_mark(store: Store) -> None:
    trades = [make_trade(tx=f"0x{i}", timestamp=1000.0 + i) for i in range(5)]
    await store.add_trades(trades)
    since = 1001.0
    found = await store.unchecked_trades(since, limit=3)
    assert [t.timestamp for t in found] == [1001.0, 1002.0, 1003.0]
    marked = await store.mark_checked({found[0].trade_key: {"flagged": True}}, at=5.0)
    assert marked == 1
    # marking again is harmless: only unchecked trades are updated
    assert await store.mark_checked({found[0].trade_key: None}, at=6.0) == 0
    again = await store.unchecked_trades(since, limit=10)
    assert [t.timestamp for t in again] == [1002.0, 1003.0, 1004.0]
    checked = await store.get_trade(found[0].trade_key)
    assert checked is not None and checked.anomaly_checked
    assert checked.anomaly == {"flagged": True} and checked.anomaly_checked_at == 5.0


async def test_analysis_is_stored_on_the_trade(store: Store) -> None:
    trade = make_trade()
    await store.add_trades([trade])
    assert await store.set_analysis(trade.trade_key, {"score": 0.5})
    assert await store.set_analysis("missing", {"score": 0.5}) is False
    got = await store.get_trade(trade.trade_key)
    assert got is not None and got.analysis == {"score": 0.5}


async def test_market_volumes(store: Store) -> None:
    await store.add_trades(
        [
            make_trade(tx="0x1", size=100, price=0.5, timestamp=10),
            make_trade(tx="0x2", size=100, price=0.5, timestamp=20),
            make_trade(tx="0x3", size=10, price=0.5, timestamp=20, market=MARKET_B),
        ]
    )
    vols = await store.market_volumes([MARKET_A, MARKET_B, "0xnone"], since=15)
    assert vols == {MARKET_A: pytest.approx(50.0), MARKET_B: pytest.approx(5.0)}


async def test_wallet_stats_aggregation_and_dirty_wallets(store: Store) -> None:
    await store.add_trades(
        [
            make_trade(tx="0x1", size=1000, price=0.5, side="BUY", timestamp=10, ingested_at=1),
            make_trade(tx="0x2", size=100, price=0.5, side="SELL", timestamp=50, ingested_at=2),
            make_trade(tx="0x3", market=MARKET_B, size=10, price=1, timestamp=60, ingested_at=2),
            make_trade(tx="0x4", wallet=WALLET_B, size=1, price=1, timestamp=5, ingested_at=9),
        ]
    )
    assert await store.dirty_wallets(None, "", 10) == sorted([WALLET_A, WALLET_B])
    assert await store.dirty_wallets(None, "", 1) == [WALLET_A]
    assert await store.dirty_wallets(None, WALLET_A, 10) == [WALLET_B]
    assert await store.dirty_wallets(5, "", 10) == [WALLET_B]
    stats = {s.address: s for s in await store.compute_wallet_stats([WALLET_A], since_30d=40)}
    a = stats[WALLET_A]
    assert (a.trade_count, a.market_count) == (3, 2)
    assert a.total_volume == pytest.approx(560)
    assert a.buy_volume == pytest.approx(510) and a.sell_volume == pytest.approx(50)
    assert a.volume_30d == pytest.approx(60) and a.max_trade == pytest.approx(500)
    assert (a.first_seen, a.last_seen) == (10, 60)
    assert a.pseudonym == "Quiet-Harbor"


async def test_wallet_upsert_and_read(store: Store) -> None:
    w = WalletStats(WALLET_A, trade_count=2, total_volume=5.0, is_whale=True, whale_reasons=["x"])
    await store.upsert_wallets([w])
    w.trade_count = 3
    await store.upsert_wallets([w, WalletStats(WALLET_B)])
    got = await store.get_wallets([WALLET_A, WALLET_B, "0xnone"])
    assert set(got) == {WALLET_A, WALLET_B}
    assert got[WALLET_A].trade_count == 3 and got[WALLET_A].whale_reasons == ["x"]


async def test_job_state(store: Store) -> None:
    assert await store.get_state("whale-updates") is None
    await store.set_state("whale-updates", {"lastIngestedAt": 12.5})
    await store.set_state("whale-updates", {"lastIngestedAt": 13.5})
    assert await store.get_state("whale-updates") == {"lastIngestedAt": 13.5}


async def test_the_same_alert_twice_exists_once(store: Store) -> None:
    assert await store.insert_alert(_alert()) is True
    assert await store.insert_alert(_alert()) is False
    got = await store.get_alert(_alert().id)
    assert got is not None and got.status == "pending" and got.signals[0].name == "large_trade"
    assert await store.get_alert("missing") is None


async def test_raise_alert_cooldown_is_in_trade_time_either_side(store: Store) -> None:
    cooldown = 1800.0
    first = await store.raise_alert(_alert("a:t1", trade_time=10_000.0, created=5.0), cooldown)
    assert (first.outcome, first.alert_id) == ("inserted", _alert("a:t1").id)
    # the same alert again: it exists (whatever its cooldown)
    assert (await store.raise_alert(_alert("a:t1", trade_time=10_000.0), cooldown)).outcome == (
        "exists"
    )
    # another trade of the same wallet and market, 29 min later or earlier in *trade* time
    # (created hours later by the wall clock, as a backlog drained at once is): held back
    for when in (10_000.0 + 1799, 10_000.0 - 1799):
        later = await store.raise_alert(_alert(f"a:{when}", trade_time=when, created=9e9), cooldown)
        assert (later.outcome, later.alert_id) == ("cooldown", first.alert_id)
    # exactly one cooldown away, another wallet, another market, no cooldown: raised
    a_cooldown_away = _alert("a:t2", trade_time=11_800.0, created=101)
    assert (await store.raise_alert(a_cooldown_away, cooldown)).outcome == "inserted"
    other_wallet = _alert("a:t3", WALLET_B, trade_time=10_001.0, created=102)
    assert (await store.raise_alert(other_wallet, cooldown)).outcome == "inserted"
    other_market = _alert("a:t4", market=MARKET_B, trade_time=10_001.0, created=103)
    assert (await store.raise_alert(other_market, cooldown)).outcome == "inserted"
    no_cooldown = _alert("a:t5", trade_time=10_002.0, created=104)
    assert (await store.raise_alert(no_cooldown, 0.0)).outcome == "inserted"
    stored = await store.get_alert(first.alert_id)
    assert stored is not None and stored.trade_time == 10_000.0 and stored.trade_key == "t1"
    listed = await store.list_alerts()
    assert [a.trade_key for a in listed] == ["t1", "t2", "t3", "t4", "t5"]  # by created_at
    assert [a.trade_key for a in await store.list_alerts(created_since=102, limit=2)] == [
        "t3",
        "t4",
    ]


async def test_concurrent_raises_in_one_cooldown_store_one_alert(store: Store) -> None:
    """Twenty jobs raising alerts for one burst at once: exactly one alert is stored."""
    burst = [_alert(f"a:b{i}", trade_time=5_000.0 + 30 * i) for i in range(20)]
    outcomes = await asyncio.gather(*(store.raise_alert(a, 1800.0) for a in burst))
    inserted = [o for o in outcomes if o.outcome == "inserted"]
    assert len(inserted) == 1
    assert {o.alert_id for o in outcomes} == {inserted[0].alert_id}
    assert len(await store.list_alerts()) == 1


async def test_two_connections_cannot_both_alert(tmp_path: Path) -> None:
    """Two store connections on one SQLite file (as two processes have), racing on threads."""
    path = str(tmp_path / "shared.db")
    one, two = SqliteStore(path), SqliteStore(path)
    await one.open()
    await two.open()
    try:
        for round_ in range(10):
            raises = [
                (one if i % 2 else two).raise_alert(
                    _alert(f"a:r{round_}-{i}", trade_time=1e6 * round_ + i), 1800.0
                )
                for i in range(8)
            ]
            outcomes = await asyncio.gather(*raises)
            assert sum(o.outcome == "inserted" for o in outcomes) == 1
        assert len(await one.list_alerts()) == 10
    finally:
        await one.close()
        await two.close()


async def test_unchecked_trades_of_one_wallet_and_market_up_to_a_trade(store: Store) -> None:
    trades = [
        make_trade(tx="0x1", timestamp=10),
        make_trade(tx="0x2", timestamp=20),
        make_trade(tx="0x3", timestamp=20, market=MARKET_B),
        make_trade(tx="0x4", timestamp=20, wallet=WALLET_B),
        make_trade(tx="0x5", timestamp=30),
        make_trade(tx="0x6", timestamp=5),
    ]
    await store.add_trades(trades)
    await store.mark_checked({trades[5].trade_key: None}, at=1.0)
    assert await store.count_unchecked() == 5
    everything = await store.unchecked_trades()  # no age limit: however old
    assert [t.timestamp for t in everything] == [10, 20, 20, 20, 30]
    keys = [(t.timestamp, t.trade_key) for t in everything]
    assert keys == sorted(keys)  # ties in time are ordered by trade key
    mine = await store.unchecked_trades(
        None, 10, wallet=WALLET_A, condition_id=MARKET_A, until=(20, trades[1].trade_key)
    )
    assert [t.trade_key for t in mine] == [trades[0].trade_key, trades[1].trade_key]
    assert await store.unchecked_trades(15, 10, wallet=WALLET_B) == [
        await store.get_trade(trades[3].trade_key)
    ]


async def test_histories_as_of_a_trade(store: Store) -> None:
    t = [
        make_trade(tx="0x1", size=100, price=0.5, timestamp=10),  # $50
        make_trade(tx="0x2", size=100, price=0.2, timestamp=20),  # $20
        make_trade(tx="0x3", size=100, price=0.1, timestamp=20, market=MARKET_B),  # $10
        make_trade(tx="0x4", size=10, price=1.0, timestamp=30, wallet=WALLET_B),  # $10
    ]
    await store.add_trades(t)
    cut = (20.0, t[2].trade_key)
    totals = await store.wallet_totals([WALLET_A, WALLET_B, "0xnone"], cut)
    before_cut = [x for x in t[:3] if (x.timestamp, x.trade_key) < cut]
    assert set(totals) == {WALLET_A}
    assert totals[WALLET_A].trade_count == len(before_cut)
    assert totals[WALLET_A].volume == pytest.approx(sum(x.usdc_size for x in before_cut))
    assert totals[WALLET_A].first_seen == 10
    volumes = await store.market_totals([MARKET_A, MARKET_B], since=15, before=(31.0, ""))
    assert volumes == {MARKET_A: pytest.approx(30.0), MARKET_B: pytest.approx(10.0)}
    points = await store.trade_points([WALLET_B], [MARKET_B], since=20, until=30)
    assert [(p.trade_key, p.wallet, p.condition_id) for p in points] == [
        (t[2].trade_key, WALLET_A, MARKET_B),
        (t[3].trade_key, WALLET_B, MARKET_A),
    ]
    assert points[0].usdc == pytest.approx(10.0) and points[1].timestamp == 30
    both = await store.trade_points([WALLET_A], [MARKET_A], since=0, until=100)
    assert len(both) == 4 and len({p.trade_key for p in both}) == 4  # each trade once


async def test_claim_send_finish_is_conditional(store: Store) -> None:
    alert = _alert()
    await store.insert_alert(alert)
    claimed = await store.claim_alert(alert.id, now=10.0, lease=30.0, attempt_id="a1")
    assert claimed is not None and claimed.status == "sending" and claimed.attempts == 1
    # held by a1: nobody else can claim it until the lease expires
    assert await store.claim_alert(alert.id, now=20.0, lease=30.0, attempt_id="a2") is None
    stolen = await store.claim_alert(alert.id, now=41.0, lease=30.0, attempt_id="a2")
    assert stolen is not None and stolen.attempts == 2
    # a1 lost its claim: its finish is refused
    assert not await store.finish_alert(alert.id, "a1", "sent", 42.0, message_id="m1")
    assert await store.finish_alert(alert.id, "a2", "sent", 42.0, message_id="m2")
    done = await store.get_alert(alert.id)
    assert done is not None and done.status == "sent" and done.discord_message_id == "m2"
    assert done.sent_at == 42.0
    assert await store.claim_alert(alert.id, now=1e9, lease=30.0, attempt_id="a3") is None


async def test_retry_status_can_be_claimed_again(store: Store) -> None:
    alert = _alert()
    await store.insert_alert(alert)
    assert await store.claim_alert(alert.id, 1.0, 30.0, "a1")
    await store.finish_alert(alert.id, "a1", "retry", 2.0, error="HTTP 500", next_attempt_at=4.0)
    retry = await store.get_alert(alert.id)
    assert retry is not None and retry.status == "retry" and retry.last_error == "HTTP 500"
    assert await store.claim_alert(alert.id, 3.0, 30.0, "a2") is not None
    await store.finish_alert(alert.id, "a2", "failed", 4.0, error="HTTP 404")
    assert await store.claim_alert(alert.id, 1e9, 30.0, "a3") is None


async def test_open_store_by_url(tmp_path: Path) -> None:
    async with open_store("memory://") as mem:
        assert await mem.add_trades([make_trade()]) == 1
    url = f"sqlite:///{tmp_path}/sub/store.db"
    async with open_store(url) as first:
        await first.add_trades([make_trade()])
    async with open_store(url) as second:
        assert await second.add_trades([make_trade()]) == 0


async def test_open_store_rejects_unknown_scheme() -> None:
    from polyjobs.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown store URL"):
        async with open_store("postgres://u:secret@h/db"):
            pass


async def test_mongo_indexes_are_created_idempotently() -> None:
    client: Any = mongomock_ng.MongoClient()
    for _ in range(2):
        store = MongoStore(lambda: client, "idx")
        await store.open()
    info = client.idx.transactions.index_information()
    assert any(v.get("unique") and v["key"] == [("tradeKey", 1)] for v in info.values())
    unchecked = info["unchecked_in_order"]
    assert unchecked["partialFilterExpression"] == {"metadata.anomalyChecked": False}
    alerts = client.idx.alerts.index_information()
    assert any(v.get("expireAfterSeconds") == 0 for v in alerts.values())


async def test_recent_alerts_are_paged_newest_first(store: Store) -> None:
    for i in range(5):
        assert await store.insert_alert(_alert(f"anomaly:v1:k{i}", created=100.0 + i))
    assert await store.count_alerts() == 5
    first = await store.recent_alerts(0, 2)
    second = await store.recent_alerts(2, 2)
    last = await store.recent_alerts(4, 2)
    keys = [a.dedupe_key for a in (*first, *second, *last)]
    assert keys == [f"anomaly:v1:k{i}" for i in (4, 3, 2, 1, 0)]
    assert await store.recent_alerts(5, 2) == []


async def test_wallets_are_paged_by_volume_and_whales_filtered(store: Store) -> None:
    wallets = [
        WalletStats(f"0x{i:040x}", trade_count=i, total_volume=1000.0 * i, is_whale=i % 2 == 0)
        for i in range(1, 6)
    ]
    await store.upsert_wallets(wallets)
    assert await store.count_wallets(False) == 5
    assert await store.count_wallets(True) == 2
    page = await store.list_wallets(0, 3, False)
    assert [w.total_volume for w in page] == [5000.0, 4000.0, 3000.0]
    rest = await store.list_wallets(3, 3, False)
    assert [w.total_volume for w in rest] == [2000.0, 1000.0]
    whales = await store.list_wallets(0, 10, True)
    assert [w.address for w in whales] == [f"0x{4:040x}", f"0x{2:040x}"]
    assert all(w.is_whale for w in whales)


async def test_checked_counts_since_a_moment(store: Store) -> None:
    trades = [make_trade(tx=f"0x{i}", timestamp=1000.0 + i) for i in range(5)]
    await store.add_trades(trades)
    await store.mark_checked({trades[0].trade_key: {"flagged": True}}, at=10.0)
    await store.mark_checked(
        {
            trades[1].trade_key: {"flagged": True, "suppressed": "cooldown"},
            trades[2].trade_key: {"flagged": False, "skipped": "older than 60s"},
            trades[3].trade_key: {"flagged": False, "suppressed": None, "skipped": None},
        },
        at=20.0,
    )
    assert await store.checked_counts(15.0) == {
        "checked": 3,
        "detected": 1,
        "suppressed": 1,
        "skipped": 1,
    }
    assert (await store.checked_counts(0.0))["detected"] == 2
    assert await store.checked_counts(30.0) == dict.fromkeys(
        ("checked", "detected", "suppressed", "skipped"), 0
    )


async def test_two_mongodb_clients_cannot_both_alert() -> None:
    """Two processes' stores on one real MongoDB (the compare-and-set across clients; within
    one process the store also serializes its claims)."""
    if not REAL_MONGO:
        pytest.skip("real-MongoDB test skipped: POLYJOBS_TEST_MONGODB_URI not set")
    one, two = _real_mongo_store(), _real_mongo_store()
    two.database = one.database
    await one.open()
    await two.open()
    try:
        for round_ in range(10):
            raises = [
                (one if i % 2 else two).raise_alert(
                    _alert(f"a:m{round_}-{i}", trade_time=1e6 * round_ + i), 1800.0
                )
                for i in range(8)
            ]
            outcomes = await asyncio.gather(*raises)
            assert sum(o.outcome == "inserted" for o in outcomes) == 1
    finally:
        one._client.drop_database(one.database)
        await one.close()
        await two.close()
