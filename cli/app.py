"""The root Typer app and the console-script entry point."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from polyjobs.cli.admin import queue_app
from polyjobs.cli.board import board
from polyjobs.cli.config_cmd import backends, config
from polyjobs.cli.console import Console
from polyjobs.cli.detector import alerts, wallets
from polyjobs.cli.enqueue import enqueue
from polyjobs.cli.health import health
from polyjobs.cli.inspect import jobs_app, stats
from polyjobs.cli.migrate import migrate
from polyjobs.cli.replay import replay
from polyjobs.cli.schedule import schedule_app
from polyjobs.cli.start import start, stop


def _click_class(name: str) -> type[Exception]:
    """A base class of click's errors, from whichever click Typer uses (it may vendor one)."""
    found = next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
    assert issubclass(found, Exception)
    return found


UsageError = _click_class("UsageError")
ClickException = _click_class("ClickException")


def _message(exc: Exception) -> str:
    format_message = getattr(exc, "format_message", None)
    return str(format_message() if callable(format_message) else exc)


class OneLineErrors(TyperGroup):
    """Usage errors as one line and a pointer to ``--help`` (instead of a box)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except UsageError as exc:
            ctx: Any = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())
                sys.exit(2)
            command = ctx.command_path if ctx is not None else "polyjobs"
            Console().error(f"{_message(exc)} (see `{command} --help`)")
            sys.exit(getattr(exc, "exit_code", 2))
        except ClickException as exc:
            Console().error(_message(exc))
            sys.exit(getattr(exc, "exit_code", 1))
        except (typer.Abort, EOFError):
            Console().error("aborted; nothing was changed")
            sys.exit(1)
        except BaseException as exc:
            if type(exc).__name__ != "Abort":
                raise
            Console().error("aborted; nothing was changed")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="polyjobs",
    help="Run and inspect polyjobs job queues.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


def _version(value: bool) -> None:
    if value:
        from polyjobs import __version__

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
app.command()(health)
app.command()(enqueue)
app.command()(config)
app.command()(backends)
app.command()(board)
app.command()(migrate)
app.command()(alerts)
app.command()(wallets)
app.command()(replay)
app.add_typer(jobs_app, name="jobs")
app.add_typer(schedule_app, name="schedule")
app.add_typer(queue_app, name="queue")


def main() -> None:
    app()
