"""Test helpers shipped with the domain: trade builders and a fake HTTP server on loopback.

:class:`FakeHTTPServer` is a tiny asyncio HTTP/1.1 server on ``127.0.0.1`` (port 0) for
exercising the Discord and Gamma clients over real sockets: script answers per path prefix
(status, JSON body, headers, delay) and read back what was received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
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


class FakeHTTPServer:
    """``async with FakeHTTPServer() as server:`` then ``server.url``; ``server.script(prefix,
    FakeResponse(...), ...)`` queues answers for requests whose path starts with ``prefix``
    (when the queue is empty, ``server.default`` answers)."""

    def __init__(self, default: FakeResponse | None = None) -> None:
        self.default = default or FakeResponse(200, {})
        self.received: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[FakeResponse]] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.url = ""

    def script(self, prefix: str, *responses: FakeResponse) -> None:
        self._scripts.setdefault(prefix, deque()).extend(responses)

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

    def _answer_for(self, path: str) -> FakeResponse:
        for prefix, queue in sorted(self._scripts.items(), key=lambda kv: -len(kv[0])):
            if path.startswith(prefix) and queue:
                return queue.popleft()
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
            self.received.append(ReceivedRequest(method, parts.path, parse_qs(parts.query), body))
            answer = self._answer_for(parts.path)
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
