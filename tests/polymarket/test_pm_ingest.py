from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyjobs.errors import InvalidArgumentError
from polyjobs.polymarket.ingest import ingest
from polyjobs.polymarket.rows import parse_trades
from polyjobs.polymarket.sqlite_store import SqliteStore

FIXTURES = Path(__file__).parent / "fixtures"  # JSON bodies as the real services send them


def fixture(name: str) -> object:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_v1_v2_and_rtds_rows_give_the_same_trade() -> None:
    v1, _ = parse_trades(fixture("data_api_v1_trades.json"), ingested_at=1.0)
    v2, _ = parse_trades(fixture("data_api_v2_trades_page.json"), ingested_at=1.0)
    rtds, _ = parse_trades(fixture("rtds_activity_trade_message.json"), ingested_at=1.0)
    assert v1[0].trade_key == v2[0].trade_key == rtds[0].trade_key
    trade = v1[0]
    assert trade.usdc_size == pytest.approx(15_000)
    assert trade.outcome == "Yes" and trade.outcome_index == 0
    assert trade.event_slug == "x-announcement" and trade.pseudonym == "Quiet-Harbor"
    assert v2[0].source == "data-api/v2/trades"


def test_bad_rows_are_skipped_and_errors_are_clear() -> None:
    trades, skipped = parse_trades(
        [{"side": "BUY"}, {"proxyWallet": "0x1", "side": "HOLD"}], ingested_at=0
    )
    assert (trades, skipped) == ([], 2)
    with pytest.raises(InvalidArgumentError, match="offset must be <= 10000"):
        parse_trades(fixture("data_api_v1_error.json"), ingested_at=0)


async def test_ingesting_twice_stores_once() -> None:
    store = SqliteStore(":memory:")
    await store.open()
    body = fixture("data_api_v1_trades.json")
    assert await ingest(store, body, now=5.0) == {"received": 1, "stored": 1, "skipped": 0}
    assert await ingest(store, fixture("data_api_v2_trades_page.json")) == {
        "received": 1,
        "stored": 0,
        "skipped": 0,
    }
    await store.close()
