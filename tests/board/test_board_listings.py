"""Applications' read-only listings on the board (``polyjobs_listings``): the detector's alerts
and wallets pages, and the rules every listing page follows (text never markup, links only to
http(s), paging, JSON, the board's token, secrets masked)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyjobs.backend import Backend
from polyjobs.listings import Listing, ListingColumn, ListingPage
from polyjobs.polymarket.models import Alert, Signal, WalletStats
from polyjobs.polymarket.store import open_store
from polyjobs.processors.listings import LISTINGS
from tests.board.conftest import ClientFactory

ROWS = [
    {
        "name": f"<script>alert({i})</script>" if i == 0 else f"row {i}",
        "url": "javascript:alert(1)" if i == 0 else f"https://example.com/{i}",
        "n": i,
        "api_key": "sk-live-0123456789abcdef",
    }
    for i in range(5)
]


async def _fetch(settings: Mapping[str, str], offset: int, limit: int) -> ListingPage:
    assert settings["WHO"] == "tests"
    return ListingPage(ROWS[offset : offset + limit], len(ROWS))


THINGS = Listing(
    key="things",
    title="Things",
    columns=(
        ListingColumn("name", "name"),
        ListingColumn("url", "url", "link"),
        ListingColumn("n", "n", "num"),
        ListingColumn("key", "api_key"),
    ),
    fetch=_fetch,
)


async def test_a_listing_page_shows_text_links_to_http_only_and_pages(
    backend: Backend, make_client: ClientFactory
) -> None:
    client = await make_client(listings={"things": THINGS}, settings={"WHO": "tests"}, page_size=2)
    overview = await client.get("/admin/queues")
    assert 'href="/admin/lists/things"' in overview.text  # in the header of every page
    first = await client.get("/admin/lists/things")
    assert first.status_code == 200
    assert "<script>alert(0)" not in first.text and "&lt;script&gt;alert(0)" in first.text
    assert 'href="javascript:' not in first.text and "javascript:alert(1)" in first.text
    assert 'href="https://example.com/1"' in first.text
    assert "sk-live-0123456789abcdef" not in first.text  # a secret key's value is masked
    assert "page 1 of 3" in first.text and "row 2" not in first.text
    third = await client.get("/admin/lists/things?page=3")
    assert "row 4" in third.text and "row 1" not in third.text
    api = (await client.get("/api/lists/things?start=1&limit=2")).json()
    assert [r["n"] for r in api["rows"]] == [1, 2] and api["total"] == 5
    assert api["rows"][0]["api_key"] != "sk-live-0123456789abcdef"
    assert (await client.get("/api/lists/nothing")).status_code == 404
    assert (await client.get("/admin/lists/nothing")).status_code == 404


async def test_listings_need_the_token_like_every_page(
    backend: Backend, make_client: ClientFactory, token: str
) -> None:
    client = await make_client(listings={"things": THINGS}, settings={"WHO": "tests"}, token=token)
    assert (await client.get("/api/lists/things")).status_code == 401
    page = await client.get("/admin/lists/things")
    assert page.status_code in (303, 307, 401) and "row 1" not in page.text
    signed = await client.get("/api/lists/things", headers={"Authorization": f"Bearer {token}"})
    assert signed.status_code == 200


def _seed_store(home: Path) -> None:
    async def go() -> None:
        async with open_store(f"sqlite:///{home / 'polymarket.db'}") as store:
            for i in range(3):
                alert = Alert(
                    dedupe_key=f"anomaly:v1:t{i}",
                    kind="anomaly",
                    severity="high" if i == 2 else "medium",
                    trade_key=f"t{i}",
                    wallet="0x" + f"{i}" * 40,
                    condition_id="0x" + "c" * 64,
                    signals=[Signal("large_trade", 15000.0 + i, 10000.0, "USDC")],
                    score=0.5 + i / 10,
                    summary={
                        "title": "<b>Rain</b> in Paris?",
                        "eventSlug": "rain",
                        "slug": "rain-paris",
                        "pseudonym": f"p{i}",
                        "transactionHash": "0x" + f"{i}" * 64,
                        "side": "BUY",
                        "outcome": "Yes",
                        "usdcSize": 15000.0 + i,
                    },
                    created_at=1_700_000_000.0 + i,
                )
                assert await store.insert_alert(alert)
            await store.upsert_wallets(
                [
                    WalletStats(
                        "0x" + "a" * 40, 10, 250_000.0, is_whale=True, whale_reasons=["volume"]
                    ),
                    WalletStats("0x" + "b" * 40, 2, 900.0, pseudonym="small"),
                ]
            )

    home.mkdir(parents=True, exist_ok=True)
    asyncio.run(go())


async def test_the_detector_shows_its_alerts_and_wallets(
    backend: Backend, make_client: ClientFactory, tmp_path: Path
) -> None:
    home = tmp_path / "state"
    await asyncio.to_thread(_seed_store, home)
    listings = {listing.key: listing for listing in LISTINGS}
    client = await make_client(listings=listings, settings={"POLYJOBS_HOME": str(home)})
    alerts = await client.get("/admin/lists/alerts")
    assert alerts.status_code == 200, alerts.text
    assert alerts.text.count('<td data-key="severity">') == 3
    assert "&lt;b&gt;Rain&lt;/b&gt; in Paris?" in alerts.text  # a title is text, not markup
    assert "large_trade 15002 (&gt;= 10000)" in alerts.text
    assert 'href="https://polygonscan.com/tx/0x' + "2" * 64 + '"' in alerts.text
    assert 'href="https://polymarket.com/event/rain/rain-paris"' in alerts.text
    body: dict[str, Any] = (await client.get("/api/lists/alerts?limit=1")).json()
    assert body["total"] == 3 and body["rows"][0]["severity"] == "high"  # newest first
    wallets = await client.get("/admin/lists/wallets")
    assert "0x" + "a" * 40 in wallets.text and "whale" in wallets.text
    assert 'href="https://polymarket.com/profile/0x' + "a" * 40 + '"' in wallets.text


async def test_the_board_command_offers_the_detector_listings() -> None:
    """The detector contributes its listings through its plugin, as any application would."""
    from polyjobs.plugins import PluginHost

    host = PluginHost.load()
    assert {"alerts", "wallets"} <= set(host.listings())
