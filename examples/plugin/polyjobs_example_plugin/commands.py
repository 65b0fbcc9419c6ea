"""The plugin's command, ``polyjobs shout``: imported only when it runs (or when
``polyjobs --help`` lists it), so what it needs is imported here, not by the plugin module."""

from __future__ import annotations

from typing import Annotated

import typer


def shout(
    text: Annotated[str, typer.Argument(help="What to shout.")],
    times: Annotated[int, typer.Option("--times", "-n", min=1, help="How many times.")] = 1,
) -> None:
    """Print TEXT as the example-echo queue would return it (upper-cased)."""
    for _ in range(times):
        typer.echo(text.upper())
