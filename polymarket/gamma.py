"""A small Gamma API client (market metadata by condition id), cached in memory."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from polyjobs.polymarket.http_errors import describe_http_error

log = logging.getLogger(__name__)


class GammaError(Exception):
    """Gamma could not answer (timeout, HTTP error, unexpected body). Callers degrade."""


def _json_list(value: Any) -> list[Any]:
    """Gamma sends ``outcomes``/``clobTokenIds`` as JSON-encoded strings (v2: real arrays)."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return []
        return parsed if isinstance(parsed, list) else []
    return []


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def parse_market(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields polyjobs uses from one Gamma market (tolerant of missing ones)."""
    return {
        "conditionId": raw.get("conditionId"),
        "question": raw.get("question") or "",
        "slug": raw.get("slug") or "",
        "endDate": raw.get("endDate"),
        "volumeNum": _float(raw.get("volumeNum", raw.get("volume"))),
        "volume24hr": _float(raw.get("volume24hr")),
        "liquidityNum": _float(raw.get("liquidityNum", raw.get("liquidity"))),
        "outcomes": _json_list(raw.get("outcomes")),
        "outcomePrices": [_float(p) for p in _json_list(raw.get("outcomePrices"))],
        "clobTokenIds": _json_list(raw.get("clobTokenIds") or raw.get("positionIds")),
        "lastTradePrice": _float(raw.get("lastTradePrice")),
        "closed": bool(raw.get("closed")),
    }


class GammaClient:
    """``await gamma.market(condition_id)``: the parsed market, or None if Gamma has none.

    Answers (including "no such market") are cached for ``ttl`` seconds; failures are not
    cached and raise :class:`GammaError` within ``timeout`` seconds.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        timeout: float = 2.0,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def market(self, condition_id: str) -> dict[str, Any] | None:
        cached = self._cache.get(condition_id)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        try:
            response = await self.http.get(
                f"{self.base_url}/markets",
                params={"condition_ids": condition_id},
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            raise GammaError(f"Gamma timed out after {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise GammaError(f"Gamma: cannot reach {describe_http_error(exc)}") from None
        if response.status_code != 200:
            raise GammaError(f"Gamma answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise GammaError("Gamma answered with a body that is not JSON") from None
        rows = body.get("data") if isinstance(body, dict) else body
        if not isinstance(rows, list):
            raise GammaError("Gamma answered with an unexpected shape")
        found = next(
            (
                parse_market(r)
                for r in rows
                if isinstance(r, dict) and r.get("conditionId") == condition_id
            ),
            None,
        )
        self._cache[condition_id] = (self.clock() + self.ttl, found)
        return found
