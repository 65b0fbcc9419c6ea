"""The Data API client over real HTTP against a fake ``GET /trades`` on loopback: paging inside
time windows (split at the offset cap), tolerant bodies, retries (429 Retry-After, 5xx,
timeouts), malformed rows skipped and counted, filters, and the client-side rate limiter."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from polyjobs.polymarket.data_api import (
    DataApiClient,
    DataApiError,
    DataApiOptions,
    RateLimiter,
)
from polyjobs.polymarket.testing import FakeDataApi, FakeHTTPServer, FakeResponse, api_row

T0 = 1_767_484_800
MARKET_B = "0x" + "b" * 64


class Sleeps:
    """Records the client's back-off sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.calls.append(delay)


@asynccontextmanager
async def client_for(
    server: FakeHTTPServer, sleeps: Sleeps | None = None, **options: Any
) -> AsyncIterator[DataApiClient]:
    opts = DataApiOptions(base_url=server.url, **options)
    async with httpx.AsyncClient() as http:
        yield DataApiClient(http, opts, sleep=sleeps or Sleeps())


def rows(n: int, *, spacing: int = 10, start: int = T0) -> list[dict[str, Any]]:
    return [api_row(tx=f"0x{i:04x}", timestamp=start + i * spacing) for i in range(n)]


async def test_pages_inside_windows_and_splits_at_the_offset_cap() -> None:
    served = rows(25)
    async with FakeHTTPServer() as server:
        server.route("/trades", FakeDataApi(served, offset_cap=8))
        async with client_for(server, page_size=4, offset_cap=8) as client:
            result = await client.trades(T0, T0 + 1000)
    assert len(result.trades) == 25
    assert len({t.trade_key for t in result.trades}) == 25
    assert [t.timestamp for t in result.trades] == sorted(t.timestamp for t in result.trades)
    assert result.windows > 1 and result.truncated == 0
    offsets = [int(r.query["offset"][0]) for r in server.requests_to("/trades")]
    assert max(offsets) <= 8  # never past the cap: no 400
    assert result.requests == len(server.requests_to("/trades"))
    windows = {(r.query["start"][0], r.query["end"][0]) for r in server.requests_to("/trades")}
    assert len(windows) == result.windows


async def test_a_single_second_above_the_cap_is_read_as_far_as_it_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = rows(15, spacing=0)
    async with FakeHTTPServer() as server:
        server.route("/trades", FakeDataApi(served, offset_cap=4))
        async with client_for(server, page_size=4, offset_cap=4) as client:
            result = await client.trades(T0, T0)
    assert len(result.trades) == 8 and result.truncated == 1
    assert "cannot be paged" in caplog.text


async def test_accepts_a_data_envelope() -> None:
    async with FakeHTTPServer() as server:
        server.route("/trades", FakeDataApi(rows(5), envelope=True))
        async with client_for(server) as client:
            result = await client.trades(T0, T0 + 100)
    assert len(result.trades) == 5


async def test_429_waits_retry_after_then_succeeds() -> None:
    sleeps = Sleeps()
    async with FakeHTTPServer() as server:
        server.script(
            "/trades", FakeResponse(429, {"error": "rate limited"}, {"Retry-After": "1.5"})
        )
        server.route("/trades", FakeDataApi(rows(3)))
        async with client_for(server, sleeps) as client:
            result = await client.trades(T0, T0 + 100)
    assert len(result.trades) == 3
    assert sleeps.calls == [1.5]
    assert len(server.requests_to("/trades")) == 2


async def test_5xx_and_timeouts_retry_with_exponential_backoff() -> None:
    sleeps = Sleeps()
    async with FakeHTTPServer() as server:
        server.script(
            "/trades",
            FakeResponse(500, {"error": "internal"}),
            FakeResponse(502, None),
            FakeResponse(200, [], delay=0.5),  # past the client's timeout
        )
        server.route("/trades", FakeDataApi(rows(2)))
        async with client_for(server, sleeps, backoff=0.25, timeout=0.2) as client:
            result = await client.trades(T0, T0 + 100)
    assert len(result.trades) == 2
    assert sleeps.calls == [0.25, 0.5, 1.0]


async def test_gives_up_after_the_retries() -> None:
    sleeps = Sleeps()
    async with FakeHTTPServer(FakeResponse(503, {"error": "busy"})) as server:
        async with client_for(server, sleeps, retries=2) as client:
            with pytest.raises(DataApiError, match=r"HTTP 503 \(gave up after 3 tries\)"):
                await client.trades(T0, T0 + 100)
    assert len(server.requests_to("/trades")) == 3 and len(sleeps.calls) == 2


async def test_a_400_is_not_retried_and_says_why() -> None:
    async with FakeHTTPServer(FakeResponse(400, {"error": "offset must be <= 10000"})) as server:
        async with client_for(server) as client:
            with pytest.raises(DataApiError, match="HTTP 400: offset must be <= 10000"):
                await client.trades(T0, T0 + 100)
    assert len(server.requests_to("/trades")) == 1


async def test_malformed_rows_are_skipped_counted_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad: list[Any] = [
        {"proxyWallet": "0x1", "side": "HOLD", "timestamp": T0 + 1},  # bad side
        {"side": "BUY", "timestamp": T0 + 2, "size": 1, "price": 0.5},  # no wallet
        "not a row",
    ]
    caplog.set_level(logging.WARNING, logger="polyjobs.polymarket.data_api")
    async with FakeHTTPServer() as server:
        server.route("/trades", FakeDataApi([*rows(4), *bad]))
        async with client_for(server) as client:
            result = await client.trades(T0, T0 + 100)
    assert len(result.trades) == 4 and result.skipped == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3 malformed trade row(s) of 7" in warnings[0]


async def test_filters_go_on_the_wire() -> None:
    served = [
        api_row(tx="0x1", market=MARKET_B, size=30_000, price=0.5, timestamp=T0),
        api_row(tx="0x2", market=MARKET_B, size=10, price=0.5, timestamp=T0),
        api_row(tx="0x3", size=30_000, price=0.5, timestamp=T0),
    ]
    async with FakeHTTPServer() as server:
        server.route("/trades", FakeDataApi(served))
        async with client_for(server, markets=(MARKET_B,), min_notional=10_000) as client:
            result = await client.trades(T0, T0 + 100)
    assert [t.transaction_hash for t in result.trades] == ["0x1"]
    query = server.requests_to("/trades")[0].query
    assert query["market"] == [MARKET_B]
    assert query["filterType"] == ["CASH"] and query["filterAmount"] == ["10000"]
    assert query["takerOnly"] == ["true"]


async def test_the_rate_limiter_keeps_to_n_calls_per_period() -> None:
    now = [0.0]

    async def sleep(delay: float) -> None:
        now[0] += delay

    limiter = RateLimiter(3, 10.0, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(7):
        await limiter.acquire()
        stamps.append(now[0])
        now[0] += 1.0
    assert stamps == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 20.0]
    for i in range(len(stamps)):
        window = [s for s in stamps if stamps[i] <= s < stamps[i] + 10.0]
        assert len(window) <= 3


async def test_the_client_goes_through_its_rate_limiter() -> None:
    now = [0.0]
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)
        now[0] += delay

    async with FakeHTTPServer() as server:
        server.route("/trades", FakeDataApi(rows(9)))
        opts = DataApiOptions(base_url=server.url, page_size=2)
        async with httpx.AsyncClient() as http:
            limiter = RateLimiter(2, 10.0, clock=lambda: now[0], sleep=sleep)
            client = DataApiClient(http, opts, limiter=limiter)
            result = await client.trades(T0, T0 + 1000)
    assert len(result.trades) == 9 and result.requests == 5
    assert len(waited) == 2  # requests 3 and 5 waited for the window to move


async def test_the_same_page_served_twice_gives_each_trade_once() -> None:
    page = rows(3)
    async with FakeHTTPServer() as server:
        server.script(
            "/trades", FakeResponse(200, page), FakeResponse(200, page), FakeResponse(200, [])
        )
        async with client_for(server, page_size=3) as client:
            result = await client.trades(T0, T0 + 100)
    assert result.requests == 3
    assert sorted(t.transaction_hash for t in result.trades) == ["0x0000", "0x0001", "0x0002"]
