"""The root Typer app and the console-script entry point."""

from __future__ import annotations

import typer

from polyjobs import __version__

app = typer.Typer(
    name="polyjobs",
    help="Run and inspect polyjobs job queues.",
    no_args_is_help=True,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"polyjobs {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run and inspect polyjobs job queues."""


def main() -> None:
    app()
