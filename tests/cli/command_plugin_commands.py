"""The commands of ``command_plugin``: a function and a Typer app of sub-commands."""

from __future__ import annotations

from typing import Annotated

import typer


def hello(name: Annotated[str, typer.Option("--name", help="Who.")] = "world") -> None:
    """Say hello to NAME."""
    typer.echo(f"hello {name}")


greetings = typer.Typer(help="Greetings, loud or quiet.", no_args_is_help=True)


@greetings.command()
def loud(name: str) -> None:
    """Greet NAME loudly."""
    typer.echo(f"HELLO {name.upper()}")


@greetings.command()
def quiet(name: str) -> None:
    """Greet NAME quietly."""
    typer.echo(f"hello {name.lower()}")
