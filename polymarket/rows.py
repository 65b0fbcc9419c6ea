"""Trade rows: tolerant parsing of Data API v1/v2 and RTDS bodies into trades."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from polyjobs.errors import InvalidArgumentError
from polyjobs.polymarket.models import Trade

log = logging.getLogger(__name__)


def trade_rows(body: Any) -> list[Any]:
    """The rows of a Data API v1 body (a bare array), a v2 page (``{"data": [...]}``), an RTDS
    ``activity/trades`` message (``{"payload": {...}}``) or a single row."""
    if isinstance(body, list):
        return body
    if isinstance(body, Mapping):
        if isinstance(body.get("data"), list):
            return list(body["data"])
        if isinstance(body.get("payload"), Mapping):
            return [body["payload"]]
        if "proxyWallet" in body or "proxy_wallet" in body:
            return [body]
        if "error" in body:
            raise InvalidArgumentError(f"the Data API answered an error: {body['error']}"[:300])
    raise InvalidArgumentError("not a trades body (expected a list, {data: [...]} or {payload})")


def parse_trades(body: Any, *, ingested_at: float) -> tuple[list[Trade], int]:
    """``(trades, skipped)``: rows that are not trades are skipped (and logged), not fatal."""
    trades, skipped = [], 0
    for row in trade_rows(body):
        try:
            trades.append(Trade.from_api(row, ingested_at=ingested_at))
        except InvalidArgumentError as exc:
            skipped += 1
            log.warning("skipped a trade row: %s", exc)
    return trades, skipped
