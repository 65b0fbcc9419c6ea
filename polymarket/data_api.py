"""A client for Polymarket's Data API ``GET /trades``, and the trade source built on it.

- **Paging inside time windows.** The API caps ``offset`` (10,000; past it answers 400), so
  a window ``[start, end]`` is paged with ``offset`` only while the next offset stays within
  the cap; when it would pass it, the window is split in two halves, each paged from offset 0
  (the API does not document its sort order, so the split does not rely on one). Rows read
  twice across windows collapse on ``tradeKey``.
- **Tolerant parsing**: a bare list or ``{"data": [...]}`` (:func:`~polyjobs.polymarket.rows.
  trade_rows`); rows that are not trades are skipped and counted, with one warning per page
  saying how many.
- **Polite**: a client-side sliding-window rate limiter (the documented 200 requests / 10 s),
  retries on 429 (``Retry-After``) and on 5xx / timeouts / network errors with exponential
  backoff, and a timeout on every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from polyjobs.errors import InvalidArgumentError, PolyjobsError
from polyjobs.polymarket.http_errors import describe_http_error
from polyjobs.polymarket.models import Trade
from polyjobs.polymarket.rows import trade_rows

log = logging.getLogger(__name__)

DEFAULT_DATA_API_URL = "https://data-api.polymarket.com"
OFFSET_CAP = 10_000
MAX_LIMIT = 10_000
Sleep = Callable[[float], Awaitable[None]]


class DataApiError(PolyjobsError):
    """The Data API could not answer (after retries), or refused the request (4xx)."""


class RateLimiter:
    """At most ``calls`` acquisitions in any ``period`` seconds (a sliding window)."""

    def __init__(
        self,
        calls: int = 200,
        period: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if calls < 1 or period <= 0:
            raise InvalidArgumentError(f"rate limit must be >= 1 per > 0 s, got {calls}/{period}")
        self.calls = calls
        self.period = period
        self.clock = clock
        self.sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                while self._sent and self._sent[0] <= now - self.period:
                    self._sent.popleft()
                if len(self._sent) < self.calls:
                    self._sent.append(now)
                    return
                await self.sleep(self._sent[0] + self.period - now)


@dataclass(frozen=True, slots=True)
class DataApiOptions:
    """How the client talks to the Data API (defaults: the documented limits)."""

    base_url: str = DEFAULT_DATA_API_URL
    timeout: float = 10.0
    page_size: int = 1000
    offset_cap: int = OFFSET_CAP
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    rate_calls: int = 200
    rate_period: float = 10.0
    markets: tuple[str, ...] = ()
    min_notional: float | None = None
    taker_only: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_LIMIT:
            raise InvalidArgumentError(f"page size must be 1..{MAX_LIMIT}, got {self.page_size}")
        if self.offset_cap < 0 or self.retries < 0:
            raise InvalidArgumentError("offset cap and retries must be >= 0")


@dataclass(slots=True)
class TradesResult:
    """What one read of a time range gave: parsed trades (unique by key) and counters."""

    trades: list[Trade] = field(default_factory=list)
    skipped: int = 0
    requests: int = 0
    windows: int = 0
    truncated: int = 0  # windows of one second that still held more rows than the cap

    def to_json(self) -> dict[str, int]:
        return {
            "trades": len(self.trades),
            "skipped": self.skipped,
            "requests": self.requests,
            "windows": self.windows,
            "truncated": self.truncated,
        }


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


class DataApiClient:
    """``await client.trades(start, end)``: every trade with ``start <= timestamp <= end``.

    The ``http`` client is the caller's (opened and closed by whoever made it).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        options: DataApiOptions | None = None,
        *,
        limiter: RateLimiter | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.http = http
        self.options = options or DataApiOptions()
        self.limiter = limiter or RateLimiter(self.options.rate_calls, self.options.rate_period)
        self.sleep = sleep

    def _params(self, start: int, end: int, offset: int) -> dict[str, Any]:
        opts = self.options
        params: dict[str, Any] = {
            "limit": opts.page_size,
            "offset": offset,
            "start": start,
            "end": end,
            "takerOnly": "true" if opts.taker_only else "false",
        }
        if opts.markets:
            params["market"] = ",".join(opts.markets)
        if opts.min_notional is not None:
            params["filterType"] = "CASH"
            params["filterAmount"] = f"{opts.min_notional:g}"
        return params

    async def get_page(self, params: Mapping[str, Any]) -> Any:
        """One ``GET /trades`` (rate limited, retried); the decoded JSON body."""
        opts = self.options
        url = f"{opts.base_url.rstrip('/')}/trades"
        attempt = 0
        while True:
            await self.limiter.acquire()
            wait: float | None
            try:
                response = await self.http.get(url, params=dict(params), timeout=opts.timeout)
            except httpx.TimeoutException:
                problem, wait = f"timed out after {opts.timeout:g}s", None
            except httpx.HTTPError as exc:
                problem, wait = f"cannot reach {describe_http_error(exc)}", None
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise DataApiError("Data API answered a body that is not JSON") from None
                if status != 429 and status < 500:
                    raise DataApiError(f"Data API answered HTTP {status}: {_error_text(response)}")
                problem = f"HTTP {status}"
                wait = _retry_after(response) if status in (429, 503) else None
            if attempt >= opts.retries:
                offline = (
                    "; offline? `polyjobs start --demo` replays synthetic trades, or set "
                    "POLYJOBS_INGEST_SOURCE=replay:<file.jsonl>"
                    if problem.startswith(("cannot reach", "timed out"))
                    else ""
                )
                raise DataApiError(
                    f"Data API: {problem} (gave up after {attempt + 1} tries{offline})"
                )
            delay = min(opts.max_backoff, opts.backoff * 2**attempt if wait is None else wait)
            log.info("Data API: %s; retrying in %.2fs", problem, delay)
            attempt += 1
            await self.sleep(delay)

    async def trades(self, start: float, end: float) -> TradesResult:
        """Every trade in ``[start, end]`` (epoch seconds, whole seconds on the wire)."""
        result = TradesResult()
        seen: dict[str, Trade] = {}
        windows = [(int(start), int(end))]
        while windows:
            lo, hi = windows.pop()
            result.windows += 1
            split = await self._read_window(lo, hi, seen, result)
            if split:
                mid = (lo + hi) // 2
                windows += [(mid + 1, hi), (lo, mid)]
        result.trades = sorted(seen.values(), key=lambda t: (t.timestamp, t.trade_key))
        return result

    async def _read_window(
        self, lo: int, hi: int, seen: dict[str, Trade], result: TradesResult
    ) -> bool:
        """Page through one window; True when it has to be split (the offset cap is near)."""
        size = self.options.page_size
        offset = 0
        while True:
            body = await self.get_page(self._params(lo, hi, offset))
            result.requests += 1
            rows = trade_rows(body)
            trades, skipped = parse_rows(rows)
            result.skipped += skipped
            for trade in trades:
                seen.setdefault(trade.trade_key, trade)
            if len(rows) < size:
                return False
            offset += size
            if offset > self.options.offset_cap:
                if hi > lo:
                    return True
                result.truncated += 1
                log.warning(
                    "Data API: more than %d trades at timestamp %d; the rest cannot be paged",
                    self.options.offset_cap + size,
                    lo,
                )
                return False


def parse_rows(rows: Sequence[Any]) -> tuple[list[Trade], int]:
    """``(trades, skipped)`` for one page; one warning says how many rows were not trades."""
    trades: list[Trade] = []
    skipped = 0
    first = ""
    now = time.time()
    for row in rows:
        try:
            trades.append(Trade.from_api(row, ingested_at=now))
        except (InvalidArgumentError, AttributeError) as exc:
            skipped += 1
            first = first or str(exc)
    if skipped:
        log.warning(
            "Data API: skipped %d malformed trade row(s) of %d (first: %s)",
            skipped,
            len(rows),
            first,
        )
    return trades, skipped


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, Mapping) and "error" in body:
        return str(body["error"])[:200]
    return str(body)[:200]
