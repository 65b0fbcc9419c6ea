"""The detector's commands, added to ``polyjobs`` through ``polyjobs_cli_commands`` (see
:mod:`polyjobs.processors`): ``polyjobs alerts`` and ``polyjobs wallets`` (what the detector
found, from its store) and ``polyjobs replay FILE`` (the whole pipeline once over a file of
trades, then a summary).

``polyjobs --help`` imports this module to list them: the domain (the store, httpx) and rich's
tables are imported when a command runs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from polyjobs.cli.common import run, settings
from polyjobs.cli.console import Console, visible
from polyjobs.cli.logs import Events, configure_logging
from polyjobs.redact import redact_text

if TYPE_CHECKING:
    from polyjobs.polymarket.listing import Page
    from polyjobs.polymarket.store import Store

LimitOption = Annotated[int, typer.Option("--limit", "-n", help="Rows per page (1..500).")]
PageOption = Annotated[int, typer.Option("--page", "-p", min=1, help="Page number.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@asynccontextmanager
async def _store() -> AsyncIterator[Store]:
    from polyjobs.polymarket.config import load_config
    from polyjobs.polymarket.store import open_store

    resolved = settings()
    config = load_config({"POLYJOBS_HOME": str(resolved.home_dir), **resolved.plain_values()})
    async with open_store(config.store_url, database=config.mongodb_db) as store:
        yield store


def _when(ts: float | None) -> str:
    return "" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _show(
    console: Console, page: Page, what: str, columns: Sequence[str], rows: list[list[str]]
) -> None:
    """A table whose cells are plain text (titles and names are never read as markup, and
    their control characters are shown escaped)."""
    from rich.table import Table
    from rich.text import Text

    if not page.items:
        console.line(
            f"no {what}" if page.total == 0 else f"no {what} on this page ({page.total} in all)"
        )
        return
    table = Table(header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(visible(redact_text(cell))) for cell in row))
    console.print(table)
    last = page.offset + len(page.items)
    console.note(f"{what} {page.offset + 1}-{last} of {page.total}")


def _listing(
    as_json: bool,
    fetch: Callable[[Store], Awaitable[Page]],
    what: str,
    columns: Sequence[str],
    cells: Callable[[dict[str, Any]], list[str]],
) -> None:
    """One page of a listing from the store: JSON, or a table of plain-text cells."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        async with _store() as store:
            found = await fetch(store)
        if as_json:
            console.json(found.to_json())
            return
        _show(console, found, what, columns, [cells(r) for r in found.items])

    run(go, console)


def _alert_cells(row: dict[str, Any]) -> list[str]:
    from polyjobs.polymarket.listing import delivery_text, signals_text

    signals, state = signals_text(row["signals"]), delivery_text(row["delivery"])
    return [
        _when(row["created_at"]),
        str(row["severity"]),
        f"{row['score']:.2f}",
        signals,
        row["pseudonym"] or row["wallet"],
        row["title"] or row["market"],
        state,
        row["id"],
    ]


def alerts(
    limit: LimitOption = 20,
    page: PageOption = 1,
    as_json: JsonOption = False,
) -> None:
    """The detector's alerts, newest first: severity, signals, wallet, market, delivery."""

    async def fetch(store: Store) -> Page:
        from polyjobs.polymarket.listing import alerts_page

        return await alerts_page(store, (page - 1) * limit, limit)

    columns = ("created", "severity", "score", "signals", "wallet", "market", "delivery", "id")
    _listing(as_json, fetch, "alerts", columns, _alert_cells)


def _wallet_cells(row: dict[str, Any]) -> list[str]:
    return [
        row["address"],
        row["pseudonym"],
        "whale" if row["is_whale"] else "",
        ", ".join(row["whale_reasons"]),
        f"{row['total_volume']:,.2f}",
        f"{row['volume_30d']:,.2f}",
        str(row["trade_count"]),
        _when(row["last_seen"]),
    ]


def wallets(
    whales: Annotated[
        bool, typer.Option("--whales", help="Only wallets flagged as whales.")
    ] = False,
    limit: LimitOption = 20,
    page: PageOption = 1,
    as_json: JsonOption = False,
) -> None:
    """Wallets by total volume, largest first: whale flags and reasons, volumes, last trade."""

    async def fetch(store: Store) -> Page:
        from polyjobs.polymarket.listing import wallets_page

        return await wallets_page(store, (page - 1) * limit, limit, whales)

    columns = ("address", "name", "whale", "reasons", "volume", "30 days", "trades", "last trade")
    _listing(as_json, fetch, "whales" if whales else "wallets", columns, _wallet_cells)


def replay(
    file: Annotated[Path, typer.Argument(help="A JSONL file of Data API trade rows.")],
    since: Annotated[
        str | None,
        typer.Option(help="Only trades at or after this time (2026-01-04[T12:30] UTC, epoch s)."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only trades before this time.")] = None,
    store: Annotated[
        str | None,
        typer.Option(help="Keep the trades and alerts in this store (default: a temporary one)."),
    ] = None,
) -> None:
    """Ingest FILE once and run analysis, anomaly batches, the whale update and alert delivery
    until everything is done (alerts go to Discord if configured, else the console)."""
    console = Console()

    async def go() -> None:
        from polyjobs.processors.replay import ReplayRequest, parse_time, run_replay

        request = ReplayRequest(
            file,
            since=None if since is None else parse_time(since, "--since"),
            until=None if until is None else parse_time(until, "--until"),
            store_url=store,
        )
        resolved = settings()
        values = {"POLYJOBS_HOME": str(resolved.home_dir), **resolved.plain_values()}
        configure_logging(Events(console, "text"))  # alerts on stdout, other records on stderr
        summary = await run_replay(request, values, report=console.note)
        for line in summary.lines():
            console.line(line)

    run(go, console)
