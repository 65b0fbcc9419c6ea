"""Discord delivery and the Gamma client over real HTTP, against a fake server on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from polyjobs.errors import GroupRateLimitError, RateLimitError, UnrecoverableError
from polyjobs.polymarket.alerts import (
    EMBED_TOTAL_MAX,
    AlertDelivery,
    ConsoleSink,
    DeliveryError,
    DiscordWebhook,
    build_payload,
    render_text,
)
from polyjobs.polymarket.analysis import AnalysisPipeline
from polyjobs.polymarket.anomaly import AnomalyDetector, alert_summary
from polyjobs.polymarket.config import AnomalyThresholds
from polyjobs.polymarket.gamma import GammaClient, GammaError
from polyjobs.polymarket.links import market_url, transaction_url
from polyjobs.polymarket.listing import alert_row
from polyjobs.polymarket.models import Alert, Signal
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.testing import MARKET_A, FakeHTTPServer, FakeResponse, make_trade

FIXTURES = Path(__file__).parent / "fixtures"  # JSON bodies as the real services send them
TOKEN = "s3cr3t-webhook-token"
HOOK = f"/api/webhooks/1223344556677889900/{TOKEN}"


def fixture(name: str) -> object:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def server() -> AsyncIterator[FakeHTTPServer]:
    async with FakeHTTPServer(FakeResponse(200, {"id": "1325712345678901234"})) as srv:
        yield srv


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    made = SqliteStore(":memory:")
    await made.open()
    yield made
    await made.close()


async def _alert(store: SqliteStore, key: str = "anomaly:v1:k1") -> Alert:
    trade = make_trade(size=200_000, price=0.075)
    alert = Alert(
        dedupe_key=key,
        kind="anomaly",
        severity="medium",
        trade_key=trade.trade_key,
        wallet=trade.proxy_wallet,
        condition_id=trade.condition_id,
        signals=[Signal("large_trade", 15_000, 10_000, "notional USDC")],
        score=0.35,
        summary=alert_summary(trade),
    )
    await store.insert_alert(alert)
    return alert


def _delivery(store: SqliteStore, hook: DiscordWebhook) -> AlertDelivery:
    return AlertDelivery(store, hook)


def _hook(server: FakeHTTPServer, timeout: float = 2.0) -> DiscordWebhook:
    return DiscordWebhook(server.url + HOOK, timeout=timeout)


async def test_sent_once_with_wait_true_and_no_mentions(
    server: FakeHTTPServer, store: SqliteStore
) -> None:
    alert = await _alert(store)
    async with _hook(server) as http:
        delivery = _delivery(store, http)
        result = await delivery.deliver(alert.id)
        assert result["status"] == "sent" and result["messageId"] == "1325712345678901234"
        again = await delivery.deliver(alert.id)
    assert again["status"] == "already-sent"
    assert len(server.received) == 1
    request = server.received[0]
    assert request.path == HOOK  # the token is added on the wire only
    assert request.query == {"wait": ["true"]}
    assert request.body["allowed_mentions"] == {"parse": []}
    embed = request.body["embeds"][0]
    assert alert.id in embed["footer"]["text"]
    assert (
        embed["url"] == "https://polymarket.com/event/x-announcement/will-x-announce-y-by-march-31"
    )
    assert "not trading advice" in embed["description"]
    stored = await store.get_alert(alert.id)
    assert stored is not None and stored.status == "sent"
    assert stored.discord_message_id == "1325712345678901234"


async def test_429_holds_the_webhooks_group(server: FakeHTTPServer, store: SqliteStore) -> None:
    server.script(HOOK, FakeResponse(429, fixture("discord_429.json"), {"Retry-After": "1"}))
    alert = await _alert(store)
    async with _hook(server) as http:
        with pytest.raises(GroupRateLimitError) as info:
            await _delivery(store, http).deliver(alert.id)
        assert info.value.seconds == pytest.approx(0.512)  # the body's float retry_after
        stored = await store.get_alert(alert.id)
        assert stored is not None and stored.status == "retry"
        with pytest.raises(GroupRateLimitError):  # within retry_after: Discord is not called
            await _delivery(store, http).deliver(alert.id)
    async with _hook(server) as http:  # e.g. the retry, in another worker process
        result = await _delivery(store, http).deliver(alert.id)
    assert result["status"] == "sent" and result["attempts"] == 3
    assert len(server.received) == 2


async def test_a_global_429_holds_the_whole_queue(
    server: FakeHTTPServer, store: SqliteStore
) -> None:
    body: dict[str, Any] = dict(fixture("discord_429.json"))  # type: ignore[call-overload]
    body.update({"global": True, "retry_after": 0.25})
    server.script(HOOK, FakeResponse(429, body))
    alert = await _alert(store)
    async with _hook(server) as http:
        with pytest.raises(RateLimitError) as info:
            await _delivery(store, http).deliver(alert.id)
    assert info.value.seconds == pytest.approx(0.25)
    stored = await store.get_alert(alert.id)
    assert stored is not None and stored.status == "retry"


async def test_rate_limit_headers_are_followed(server: FakeHTTPServer, store: SqliteStore) -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "30"}
    server.script(HOOK, FakeResponse(200, {"id": "1"}, headers))
    first, second = await _alert(store, "a:1"), await _alert(store, "a:2")
    async with _hook(server) as http:
        assert (await _delivery(store, http).deliver(first.id))["status"] == "sent"
        with pytest.raises(GroupRateLimitError) as info:
            await _delivery(store, http).deliver(second.id)
    assert 29 < info.value.seconds <= 30
    assert len(server.received) == 1  # the empty bucket was not called
    stored = await store.get_alert(second.id)
    assert stored is not None and stored.status == "retry"


async def test_404_deleted_webhook_is_not_called_again(
    server: FakeHTTPServer, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script(HOOK, FakeResponse(404, fixture("discord_404_unknown_webhook.json")))
    first, second = await _alert(store, "a:1"), await _alert(store, "a:2")
    async with _hook(server) as http:
        with pytest.raises(UnrecoverableError, match="HTTP 404") as info:
            await _delivery(store, http).deliver(first.id)
        assert "Unknown Webhook" in str(info.value)
        with pytest.raises(UnrecoverableError, match="disabled"):
            await _delivery(store, http).deliver(second.id)
    assert len(server.received) == 1
    stored = await store.get_alert(first.id)
    assert stored is not None and stored.status == "failed"
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text


async def test_400_names_the_invalid_field(server: FakeHTTPServer, store: SqliteStore) -> None:
    server.script(HOOK, FakeResponse(400, fixture("discord_400_invalid_form_body.json")))
    alert = await _alert(store)
    async with _hook(server) as http:
        with pytest.raises(UnrecoverableError, match="HTTP 400") as info:
            await _delivery(store, http).deliver(alert.id)
    assert "BASE_TYPE_MAX_LENGTH" in str(info.value)
    stored = await store.get_alert(alert.id)
    assert stored is not None and stored.status == "failed"


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_other_permanent_statuses(
    server: FakeHTTPServer, store: SqliteStore, status: int
) -> None:
    server.script(HOOK, FakeResponse(status, {"message": "no", "code": 1}))
    alert = await _alert(store)
    async with _hook(server) as http:
        with pytest.raises(UnrecoverableError, match=f"HTTP {status}"):
            await _delivery(store, http).deliver(alert.id)


async def test_500_is_retried_later(server: FakeHTTPServer, store: SqliteStore) -> None:
    server.script(HOOK, FakeResponse(500, {"message": "oops"}))
    alert = await _alert(store)
    async with _hook(server) as http:
        with pytest.raises(DeliveryError, match="HTTP 500") as info:
            await _delivery(store, http).deliver(alert.id)
        assert not isinstance(info.value, UnrecoverableError)
        assert (await _delivery(store, http).deliver(alert.id))["status"] == "sent"
    assert len(server.received) == 2


async def test_slow_answer_times_out(server: FakeHTTPServer, store: SqliteStore) -> None:
    server.script(HOOK, FakeResponse(200, {"id": "1"}, delay=1.0))
    alert = await _alert(store)
    async with _hook(server) as http:
        http.timeout = 0.2
        with pytest.raises(DeliveryError, match="timed out") as info:
            await _delivery(store, http).deliver(alert.id)
    assert TOKEN not in str(info.value)
    stored = await store.get_alert(alert.id)
    assert stored is not None and stored.status == "retry"  # claim released for the retry


def test_payload_stays_inside_discord_limits() -> None:
    trade = make_trade(title="T" * 5000)
    alert = Alert(
        dedupe_key="k",
        kind="anomaly",
        severity="low",
        trade_key="k",
        wallet=trade.proxy_wallet,
        condition_id=trade.condition_id,
        signals=[Signal("x" * 300, 1, 1, "d" * 2000) for _ in range(30)],
        score=0.1,
        summary={**alert_summary(trade), "note": "n" * 9000},
    )
    embed = build_payload(alert)["embeds"][0]
    assert len(embed["title"]) <= 256 and len(embed["description"]) <= 4096
    assert all(len(f["value"]) <= 1024 and len(f["name"]) <= 256 for f in embed["fields"])
    total = len(embed["title"]) + len(embed["description"]) + len(embed["footer"]["text"])
    total += sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert total <= EMBED_TOTAL_MAX


async def test_console_sink_prints_alerts(store: SqliteStore) -> None:
    lines: list[str] = []
    alert = await _alert(store)
    result = await AlertDelivery(store, ConsoleSink(lines.append)).deliver(alert.id)
    assert result["status"] == "sent" and alert.id in lines[0]


TX = "0x" + "3f" * 32


def _linked_alert(**summary: Any) -> Alert:
    trade = make_trade(size=200_000, price=0.075, tx=TX, timestamp=1_767_484_800 + 3723)
    return Alert(
        dedupe_key="anomaly:v1:" + trade.trade_key,
        kind="anomaly",
        severity="medium",
        trade_key=trade.trade_key,
        wallet=trade.proxy_wallet,
        condition_id=trade.condition_id,
        signals=[Signal("large_trade", 15_000, 10_000, "notional USDC")],
        score=0.35,
        summary={**alert_summary(trade), **summary},
    )


def test_alerts_carry_the_transaction_time_and_links() -> None:
    alert = _linked_alert()
    market = "https://polymarket.com/event/x-announcement/will-x-announce-y-by-march-31"
    embed = build_payload(alert)["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Transaction"] == f"[0x3f3f3f3f...3f3f3f3f](https://polygonscan.com/tx/{TX})"
    assert fields["Trade time"] == "2026-01-04 01:02:03 UTC"
    assert fields["Market"] == f"[Will X announce Y by March 31?]({market})"
    assert embed["url"] == market and embed["timestamp"] == "2026-01-04T01:02:03+00:00"
    assert alert.trade_key[:16] in embed["footer"]["text"]
    text = render_text(alert)
    assert f"  Transaction: 0x3f3f3f3f...3f3f3f3f  https://polygonscan.com/tx/{TX}" in text
    assert "  Trade time: 2026-01-04 01:02:03 UTC" in text
    assert f"  Market: Will X announce Y by March 31?  {market}" in text
    assert f"  Trade key: {alert.trade_key}" in text


def test_links_only_from_well_formed_slugs_and_hashes() -> None:
    assert market_url({"slug": "a-market"}) == "https://polymarket.com/market/a-market"
    assert market_url({"eventSlug": "an-event"}) == "https://polymarket.com/event/an-event"
    assert market_url({"eventSlug": "", "slug": ""}) is None
    odd = market_url({"eventSlug": "x)[evil](http://e", "slug": "above-3%"})
    assert odd == "https://polymarket.com/event/x%29%5Bevil%5D%28http%3A%2F%2Fe/above-3%25"
    assert transaction_url("0x1234") is None and transaction_url(TX.upper()[2:]) is None
    alert = _linked_alert(transactionHash="not-a-hash", slug="", eventSlug="")
    fields = {f["name"]: f["value"] for f in build_payload(alert)["embeds"][0]["fields"]}
    assert fields["Transaction"] == "not-a-hash"
    assert fields["Market"] == "Will X announce Y by March 31?"


def test_user_data_is_text_in_discord() -> None:
    alert = _linked_alert(pseudonym="[click](https://evil.example) *now*", title="`x` | _y_")
    embed = build_payload(alert)["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert r"\[click\](https://evil.example) \*now\*" in fields["Wallet"]
    assert fields["Market"].startswith(r"[\`x\` \| \_y\_](")
    assert "[click](https://evil.example) *now*" in render_text(alert)  # the console: as is


async def test_unknown_alert_is_unrecoverable(store: SqliteStore) -> None:
    with pytest.raises(UnrecoverableError, match="alert nope not found"):
        await AlertDelivery(store, ConsoleSink(lambda _: None)).deliver("nope")


# -- Gamma -----------------------------------------------------------------------------------
async def test_gamma_market_is_parsed_and_cached(server: FakeHTTPServer) -> None:
    server.script("/markets", FakeResponse(200, fixture("gamma_markets.json")))
    async with httpx.AsyncClient() as http:
        gamma = GammaClient(http, server.url, timeout=1.0)
        market = await gamma.market(MARKET_A)
        again = await gamma.market(MARKET_A)
    assert market is not None and market == again
    assert market["outcomes"] == ["Yes", "No"] and market["volume24hr"] == 80412.33
    assert len(market["clobTokenIds"]) == 2
    assert len(server.requests_to("/markets")) == 1
    assert server.received[0].query == {"condition_ids": [MARKET_A]}


@pytest.mark.parametrize(
    ("answer", "message"),
    [(FakeResponse(500, {}), "HTTP 500"), (FakeResponse(200, [], delay=1.0), "timed out")],
)
async def test_gamma_failures_raise_gamma_error(
    server: FakeHTTPServer, answer: FakeResponse, message: str
) -> None:
    server.script("/markets", answer)
    async with httpx.AsyncClient() as http:
        with pytest.raises(GammaError, match=message):
            await GammaClient(http, server.url, timeout=0.2).market(MARKET_A)


async def test_analysis_degrades_when_gamma_is_slow(
    server: FakeHTTPServer, store: SqliteStore
) -> None:
    server.script("/markets", FakeResponse(200, [], delay=1.0))
    trade = make_trade(size=200_000, price=0.075)
    await store.add_trades([trade])
    async with httpx.AsyncClient() as http:
        gamma = GammaClient(http, server.url, timeout=0.2)
        detector = AnomalyDetector(store, AnomalyThresholds())
        analysis = await AnalysisPipeline(store, gamma, detector).process(trade.trade_key)
    assert analysis is not None and analysis["market"] is None
    assert analysis["degraded"] == ["gamma: Gamma timed out after 0.2s"]
    assert analysis["detected"] and analysis["alertId"]
    stored = await store.get_trade(trade.trade_key)
    assert stored is not None and stored.analysis is not None and stored.anomaly_checked


async def test_analysis_uses_gamma_market(server: FakeHTTPServer, store: SqliteStore) -> None:
    server.script("/markets", FakeResponse(200, fixture("gamma_markets.json")))
    trade = make_trade(market=MARKET_A, size=200_000, price=0.075)
    await store.add_trades([trade])
    async with httpx.AsyncClient() as http:
        gamma = GammaClient(http, server.url, timeout=1.0)
        detector = AnomalyDetector(store, AnomalyThresholds())
        analysis = await AnalysisPipeline(store, gamma, detector).process(trade.trade_key)
    assert analysis is not None and analysis["degraded"] == []
    assert analysis["market"]["question"].startswith("Will X")
    assert analysis["market"]["volume24hr"] > 0
    # Gamma's volume describes the market now, not when the trade happened: signals come from
    # the store as of the trade (this trade is the market's only stored one)
    names = {s["name"] for s in analysis["signals"]}
    assert "size_vs_market" not in names
    assert analysis["marketVolume24h"] == pytest.approx(15_000)


# -- unit tests at the HTTP edge (httpx.MockTransport) ----------------------------------------
async def test_token_only_on_the_wire() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"id": "7"})

    async with DiscordWebhook(
        "https://discord.com/api/webhooks/1/tok-en", transport=httpx.MockTransport(answer)
    ) as hook:
        assert "tok-en" not in repr(hook) and "tok-en" not in hook.public_url
        trade = make_trade()
        alert = Alert("k", "anomaly", "low", "k", trade.proxy_wallet, MARKET_A, [], 0.0)
        assert await hook.send(alert) == "7"
    assert seen == ["https://discord.com/api/webhooks/1/tok-en?wait=true"]


async def test_job_timeout_mid_send_releases_the_claim(store: SqliteStore) -> None:
    class Hanging:
        key = "hanging"

        async def send(self, alert: Alert) -> str | None:
            await asyncio.Event().wait()
            return None

    alert = await _alert(store)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await AlertDelivery(store, Hanging()).deliver(alert.id)
    stored = await store.get_alert(alert.id)
    assert stored is not None and stored.status == "retry"
    assert stored.last_error == "cancelled (job timeout or shutdown)"


def test_alert_listings_link_the_same_way() -> None:
    row = alert_row(_linked_alert())
    assert row["transaction_hash"] == TX
    assert row["links"]["transaction"] == f"https://polygonscan.com/tx/{TX}"
    assert row["links"]["market"] == (
        "https://polymarket.com/event/x-announcement/will-x-announce-y-by-march-31"
    )
