"""Read-only listings an application contributes to the board (``polyjobs_listings``).

A listing is a paged table of what an application holds or found (the Polymarket detector:
its recent alerts and its wallets). The board shows each one as a page and as JSON, with its
security rules (token, no actions); it never knows where the rows come from. Every cell is
shown as text; a ``link`` column's value becomes a link only when it is an ``http(s)`` URL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ColumnKind = Literal["text", "num", "time", "link"]


@dataclass(frozen=True, slots=True)
class ListingColumn:
    """A column: its header, the key of its value in each row, and how it is shown (``time``:
    epoch seconds as a local time; ``link``: a URL, shown as a link; ``num``: right-aligned)."""

    title: str
    key: str
    kind: ColumnKind = "text"


@dataclass(frozen=True, slots=True)
class ListingPage:
    """Rows ``offset..offset+len(rows)`` of ``total``; each row maps column keys to values
    (JSON values: the board's JSON API returns the rows as they are)."""

    rows: Sequence[Mapping[str, Any]]
    total: int


#: ``fetch(settings, offset, limit)``: one page; ``settings`` are the resolved settings
#: (``POLYJOBS_HOME`` included) the application reads its own configuration from.
Fetch = Callable[[Mapping[str, str], int, int], Awaitable[ListingPage]]


@dataclass(frozen=True, slots=True)
class Listing:
    """A read-only table of an application: ``key`` (URL segment: lowercase letters, digits
    and ``-``), ``title``, ``columns`` and ``fetch``."""

    key: str
    title: str
    columns: tuple[ListingColumn, ...]
    fetch: Fetch
    description: str = ""
