"""``polyjobs health``: exit 0 when the backend is reachable and every expected queue is being
consumed, 1 when not (a container probe), one line per check."""

from __future__ import annotations

from typing import Annotated

import typer

from polyjobs.cli.common import BackendOption, JsonOption, duration, run, session
from polyjobs.cli.console import Console
from polyjobs.errors import BackendError
from polyjobs.health import FETCH_AGE, MAX_AGE


def health(
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            "-q",
            help="A queue that must be consumed (repeat for more; full or short name). "
            "Default: every queue the backend knows.",
            show_default=False,
        ),
    ] = None,
    max_age: Annotated[
        str,
        typer.Option(help="Fail when the job next in line of a queue has waited longer."),
    ] = f"{MAX_AGE:g}s",
    fetch_age: Annotated[
        str,
        typer.Option(
            help="Fail a queue none of whose live workers fetched within this time (more "
            "than the workers' block, 30s by default)."
        ),
    ] = f"{FETCH_AGE:g}s",
    backend: BackendOption = None,
    as_json: JsonOption = False,
) -> None:
    """Exit 0 when healthy, 1 when not: the backend answers, every expected queue has a live
    worker that fetched recently, and no queue's next job has waited too long."""
    console = Console(json_mode=as_json)
    limits = (duration(max_age, "--max-age"), duration(fetch_age, "--fetch-age"))

    async def go() -> bool:
        from polyjobs.health import Check, Health, check_health

        oldest, fetched = (limit if limit is not None else 0.0 for limit in limits)
        try:
            async with session(backend) as s:
                names = [s.queue(name).name for name in queue] if queue else None
                report = await check_health(
                    s.backend, names, fetch_age=fetched, max_age=oldest, location=s.location
                )
        except BackendError as exc:
            report = Health([Check("backend", False, f"unreachable: {exc}")])
        if as_json:
            console.json(report.to_dict())
        else:
            for check in report.checks:
                console.line(check.line())
        return report.ok

    if not run(go, console):
        raise typer.Exit(1)
