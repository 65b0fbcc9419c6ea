"""Test helpers shipped with the domain: trade builders and a fake HTTP server on loopback.

:class:`FakeHTTPServer` is a tiny asyncio HTTP/1.1 server on ``127.0.0.1`` (port 0) for
exercising the Discord, Gamma and Data API clients over real sockets: script answers per path
prefix (status, JSON body, headers, delay), or route a prefix to a function of the request
(:class:`FakeDataApi` answers ``GET /trades`` like the Data API), and read back what was
received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from polyjobs.polymarket.models import Trade

WALLET_A = "0x56687bf447db6ffa42ffe2204a05edaa20f55839"
MARKET_A = "0xdd22472e552920b8438158ea7238bfadfa4f736aa4cee91a6b86c39ead110917"


def make_trade(
    *,
    wallet: str = WALLET_A,
    market: str = MARKET_A,
    size: float = 100.0,
    price: float = 0.5,
    side: str = "BUY",
    timestamp: float = 1_767_484_800.0,
    tx: str = "0x01",
    ingested_at: float = 0.0,
    title: str = "Will X announce Y by March 31?",
) -> Trade:
    """A trade in the Data API v1 shape, parsed like an ingested row."""
    row = {
        "proxyWallet": wallet,
        "side": side,
        "asset": "7132",
        "conditionId": market,
        "size": size,
        "price": price,
        "timestamp": timestamp,
        "title": title,
        "slug": "will-x-announce-y-by-march-31",
        "eventSlug": "x-announcement",
        "outcome": "Yes",
        "outcomeIndex": 0,
        "pseudonym": "Quiet-Harbor",
        "transactionHash": tx,
    }
    return Trade.from_api(row, ingested_at=ingested_at)


@dataclass
class FakeResponse:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


Handler = Callable[[ReceivedRequest], FakeResponse]


class FakeHTTPServer:
    """``async with FakeHTTPServer() as server:`` then ``server.url``; ``server.script(prefix,
    FakeResponse(...), ...)`` queues answers for requests whose path starts with ``prefix``;
    when that queue is empty, a handler set with ``server.route(prefix, handler)`` answers,
    else ``server.default``."""

    def __init__(self, default: FakeResponse | None = None) -> None:
        self.default = default or FakeResponse(200, {})
        self.received: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[FakeResponse]] = {}
        self._routes: dict[str, Handler] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.url = ""

    def script(self, prefix: str, *responses: FakeResponse) -> None:
        self._scripts.setdefault(prefix, deque()).extend(responses)

    def route(self, prefix: str, handler: Handler) -> None:
        self._routes[prefix] = handler

    def requests_to(self, prefix: str) -> list[ReceivedRequest]:
        return [r for r in self.received if r.path.startswith(prefix)]

    async def __aenter__(self) -> FakeHTTPServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def _answer_for(self, request: ReceivedRequest) -> FakeResponse:
        path = request.path
        for prefix, queue in sorted(self._scripts.items(), key=lambda kv: -len(kv[0])):
            if path.startswith(prefix) and queue:
                return queue.popleft()
        for prefix, handler in sorted(self._routes.items(), key=lambda kv: -len(kv[0])):
            if path.startswith(prefix):
                return handler(request)
        return self.default

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            request_line = (await reader.readline()).decode("latin-1").strip()
            if not request_line:
                return
            method, target, _ = request_line.split(" ", 2)
            length = 0
            while True:
                line = (await reader.readline()).decode("latin-1").strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
            raw = await reader.readexactly(length) if length else b""
            parts = urlsplit(target)
            body = json.loads(raw) if raw else None
            request = ReceivedRequest(method, parts.path, parse_qs(parts.query), body)
            self.received.append(request)
            answer = self._answer_for(request)
            if answer.delay:
                await asyncio.sleep(answer.delay)
            payload = b"" if answer.body is None else json.dumps(answer.body).encode()
            head = [f"HTTP/1.1 {answer.status} X", f"Content-Length: {len(payload)}"]
            head += ["Content-Type: application/json", "Connection: close"]
            head += [f"{k}: {v}" for k, v in answer.headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _query(request: ReceivedRequest, name: str, default: str = "") -> str:
    values = request.query.get(name)
    return values[0] if values else default


class FakeDataApi:
    """``GET /trades`` over ``rows`` like the Data API: ``start``/``end`` (inclusive),
    ``market``, ``filterType=CASH`` + ``filterAmount``, newest first, ``limit``/``offset``
    paging, and 400 for an offset past ``offset_cap``. ``envelope`` answers ``{"data": [...]}``
    instead of a bare list. Use as ``server.route("/trades", FakeDataApi(rows))``."""

    def __init__(
        self, rows: Sequence[Any], *, offset_cap: int = 10_000, envelope: bool = False
    ) -> None:
        self.rows = list(rows)
        self.offset_cap = offset_cap
        self.envelope = envelope

    def _matches(self, row: Any, request: ReceivedRequest) -> bool:
        if not isinstance(row, dict) or not isinstance(row.get("timestamp"), int | float):
            return True  # malformed rows are served as they are
        start = int(_query(request, "start", "0") or 0)
        end = int(_query(request, "end", "0") or 0) or 2**62
        if not start <= row["timestamp"] <= end:
            return False
        markets = [m for m in _query(request, "market").split(",") if m]
        if markets and row.get("conditionId") not in markets:
            return False
        if _query(request, "filterType") == "CASH":
            notional = float(row.get("size", 0)) * float(row.get("price", 0))
            return notional >= float(_query(request, "filterAmount", "0"))
        return True

    def __call__(self, request: ReceivedRequest) -> FakeResponse:
        offset = int(_query(request, "offset", "0"))
        limit = min(int(_query(request, "limit", "100")), 10_000)
        if offset > self.offset_cap:
            return FakeResponse(400, {"error": f"offset must be <= {self.offset_cap}"})
        chosen = [r for r in self.rows if self._matches(r, request)]
        chosen.sort(key=lambda r: r.get("timestamp", 0) if isinstance(r, dict) else 0)
        page = chosen[::-1][offset : offset + limit]
        return FakeResponse(200, {"data": page} if self.envelope else page)


def api_row(
    *,
    wallet: str = WALLET_A,
    market: str = MARKET_A,
    size: float = 100.0,
    price: float = 0.5,
    timestamp: int = 1_767_484_800,
    tx: str = "0x01",
    side: str = "BUY",
) -> dict[str, Any]:
    """One Data API v1 ``/trades`` row (the wire form, not parsed)."""
    return {
        "proxyWallet": wallet,
        "side": side,
        "asset": "7132",
        "conditionId": market,
        "size": size,
        "price": price,
        "timestamp": timestamp,
        "title": "Will X announce Y by March 31?",
        "slug": "will-x-announce-y-by-march-31",
        "eventSlug": "x-announcement",
        "outcome": "Yes",
        "outcomeIndex": 0,
        "pseudonym": "Quiet-Harbor",
        "transactionHash": tx,
    }
