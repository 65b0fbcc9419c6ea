"""The root Typer app and the console-script entry point."""

from __future__ import annotations

from typing import Annotated

import typer

from polyjobs import __version__
from polyjobs.cli.admin import queue_app
from polyjobs.cli.board import board
from polyjobs.cli.config_cmd import backends, config
from polyjobs.cli.enqueue import enqueue
from polyjobs.cli.inspect import jobs_app, stats
from polyjobs.cli.migrate import migrate
from polyjobs.cli.schedule import schedule_app
from polyjobs.cli.start import start, stop

app = typer.Typer(
    name="polyjobs",
    help="Run and inspect polyjobs job queues.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"polyjobs {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Run and inspect polyjobs job queues."""


app.command()(start)
app.command()(stop)
app.command()(stats)
app.command()(enqueue)
app.command()(config)
app.command()(backends)
app.command()(board)
app.command()(migrate)
app.add_typer(jobs_app, name="jobs")
app.add_typer(schedule_app, name="schedule")
app.add_typer(queue_app, name="queue")


def main() -> None:
    app()
