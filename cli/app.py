"""The root Typer app and the console-script entry point."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from polyjobs.cli.console import Console

#: The commands, in ``--help`` order, as ``module:attribute`` (a function, or a Typer app for a
#: group of sub-commands): a command's module is imported when the command runs (or when
#: ``--help`` lists it), so ``polyjobs enqueue`` does not import what ``polyjobs board`` needs.
#: Plugins add theirs the same way (``polyjobs_cli_commands``), listed after these.
COMMANDS: dict[str, str] = {
    "start": "polyjobs.cli.start:start",
    "stop": "polyjobs.cli.start:stop",
    "stats": "polyjobs.cli.inspect:stats",
    "health": "polyjobs.cli.health:health",
    "enqueue": "polyjobs.cli.enqueue:enqueue",
    "config": "polyjobs.cli.config_cmd:config",
    "backends": "polyjobs.cli.config_cmd:backends",
    "board": "polyjobs.cli.board:board",
    "migrate": "polyjobs.cli.migrate:migrate",
    "jobs": "polyjobs.cli.inspect:jobs_app",
    "schedule": "polyjobs.cli.schedule:schedule_app",
    "queue": "polyjobs.cli.admin:queue_app",
}


def _resolve(name: str, target: str) -> Any:
    """The object ``module:attribute`` names; a clear error when it cannot be loaded."""
    module, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ClickException(f"cannot load the command {name!r} ({target}): {exc}") from None


def load_command(name: str, target: str) -> Any:
    """The click command ``name`` from ``module:attribute``: a Typer app becomes a group, a
    function a command, a click command is taken as it is."""
    found = _resolve(name, target)
    if isinstance(found, typer.Typer):
        group = typer.main.get_group(found)
        group.name = name
        return group
    if callable(found) and not hasattr(found, "make_context"):
        single = typer.Typer(add_completion=False)
        single.command(name=name)(found)
        return typer.main.get_command(single)
    if not hasattr(found, "make_context"):
        raise ClickException(
            f"the command {name!r} ({target}) is not a function, a Typer app or a click command"
        )
    return found


def listed_command(name: str, target: str, panel: str | None = None) -> Any:
    """What ``polyjobs --help`` lists for ``name`` (in ``panel``, when not the commands'
    own): a command holding only its help text (the module is imported, its parameters are
    not built), or the command itself when its help is not found that way."""
    import inspect

    from typer.core import TyperCommand

    found = _resolve(name, target)
    if isinstance(found, typer.Typer) and isinstance(found.info.help, str):
        return TyperGroup(name=name, help=inspect.cleandoc(found.info.help), rich_help_panel=panel)
    if inspect.isfunction(found):
        return TyperCommand(name=name, help=inspect.getdoc(found), rich_help_panel=panel)
    command = load_command(name, target)
    command.rich_help_panel = panel
    return command


def plugin_commands() -> dict[str, tuple[str, str]]:
    """The commands the installed plugins add (``polyjobs_cli_commands``): entry points and
    ``POLYJOBS_PLUGINS``, whichever application a command then chooses with ``--app``."""
    from polyjobs.cli.common import settings
    from polyjobs.errors import PolyjobsError
    from polyjobs.plugins import PluginHost

    try:
        found = PluginHost.load(modules=settings().plugins.value).cli_commands()
    except PolyjobsError as exc:
        raise ClickException(str(exc)) from None
    clashing = sorted(set(found) & set(COMMANDS))
    if clashing:
        name = clashing[0]
        raise ClickException(
            f"plugin {found[name][1]!r} adds a command {name!r}, which polyjobs has already"
        )
    return found


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
    """Usage errors as one line and a pointer to ``--help`` (instead of a box); the commands
    of :data:`COMMANDS`, each loaded when it is first asked for."""

    listing = False
    plugins: dict[str, tuple[str, str]] | None = None

    def _plugins(self, *, tolerant: bool = False) -> dict[str, tuple[str, str]]:
        """The plugins' commands. ``tolerant`` (listing them, suggesting a name): when they
        cannot be found (a broken polyjobs.toml, a plugin that fails), say why on stderr and
        go on with the command line's own, which never need the plugins."""
        if self.plugins is None:
            try:
                self.plugins = plugin_commands()
            except ClickException as exc:
                if not tolerant:
                    raise
                Console().note(f"polyjobs: {_message(exc)}; plugins' commands are not listed")
                self.plugins = {}
        return self.plugins

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *self._plugins(tolerant=True)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in COMMANDS:
            target, panel = COMMANDS[cmd_name], None
        elif cmd_name in self._plugins():
            target, owner = self._plugins()[cmd_name]
            panel = f"Commands of {owner}"
        else:
            return None
        if self.listing:
            try:
                return listed_command(cmd_name, target, panel)
            except ClickException as exc:  # a plugin's: say why it is not listed, list the rest
                Console().note(f"polyjobs: {_message(exc)}; not listed")
                return None
        command = load_command(cmd_name, target)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:  # a typo: suggest from every command, loaded or not
            import difflib

            message = str(getattr(exc, "message", ""))
            if args and "Did you mean" not in message:
                close = difflib.get_close_matches(args[0], self.list_commands(ctx))
                if close:
                    setattr(  # noqa: B010
                        exc,
                        "message",
                        f"{message.rstrip('.')}. Did you mean {', '.join(map(repr, close))}?",
                    )
            raise

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


def main() -> None:
    app()
