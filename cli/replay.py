"""``polyjobs replay FILE``: the whole pipeline once over a file of trades, then a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polyjobs.cli.common import run, settings
from polyjobs.cli.console import Console
from polyjobs.cli.logs import Events, configure_logging


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
