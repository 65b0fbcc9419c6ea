"""Links to what an alert is about: the market on Polymarket, the transaction on Polygonscan,
the wallet's profile. Plain functions (no HTTP client): the listings and the alert messages
both use them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

POLYMARKET_URL = "https://polymarket.com"
POLYGONSCAN_TX_URL = "https://polygonscan.com/tx/"
_TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_WALLET = re.compile(r"^0x[0-9a-fA-F]{40}$")


def market_url(summary: Mapping[str, Any]) -> str | None:
    """The market's page on Polymarket from its event and market slugs (None: no slug). The
    slugs are percent-encoded, so whatever they hold stays inside the link's path."""
    event = quote(str(summary.get("eventSlug") or "").strip(), safe="")
    market = quote(str(summary.get("slug") or "").strip(), safe="")
    if event and market:
        return f"{POLYMARKET_URL}/event/{event}/{market}"
    if event:
        return f"{POLYMARKET_URL}/event/{event}"
    return f"{POLYMARKET_URL}/market/{market}" if market else None


def transaction_url(tx_hash: str) -> str | None:
    """The transaction on Polygonscan (None: not a transaction hash)."""
    return POLYGONSCAN_TX_URL + tx_hash.lower() if _TX_HASH.match(tx_hash or "") else None


def wallet_url(wallet: str) -> str | None:
    """The wallet's Polymarket profile (None: not an address)."""
    return f"{POLYMARKET_URL}/profile/{wallet.lower()}" if _WALLET.match(wallet) else None
