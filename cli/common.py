"""What every command shares: settings, the plugin host, opening the backend, error mapping."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from polyjobs.backend import Backend
from polyjobs.cli.console import Console
from polyjobs.errors import InvalidArgumentError, PolyjobsError
from polyjobs.plugins import PluginHost, open_backend
from polyjobs.queue import Queue
from polyjobs.runtime import QueueSpec
from polyjobs.settings import Settings, load_settings

T = TypeVar("T")

BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        help="Backend URL (default: $POLYJOBS_BACKEND, $REDIS_URL, polyjobs.toml, or the "
        "SQLite file in the state directory).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def settings(**flags: Any) -> Settings:
    """Resolve the settings of this invocation (the environment is read here, once)."""
    return load_settings(flags=flags, environ=os.environ, cwd=Path.cwd())


def run(make: Callable[[], Coroutine[Any, Any, T]], console: Console | None = None) -> T:
    """Run a command's coroutine; map errors to one line on stderr and exit code 1."""
    console = console or Console()
    try:
        return asyncio.run(make())
    except typer.Exit:
        raise
    except PolyjobsError as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.error("interrupted")
        raise typer.Exit(130) from None
    except OSError as exc:
        console.error(f"{type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:
        if os.environ.get("POLYJOBS_DEBUG"):
            raise
        logging.getLogger("polyjobs.cli").debug("unexpected error", exc_info=True)
        console.error(f"unexpected {type(exc).__name__}: {exc} (set POLYJOBS_DEBUG=1 for details)")
        raise typer.Exit(1) from None


def plugin_host(resolved: Settings, *extra: object) -> PluginHost:
    """The plugins of this invocation: built-ins, entry points and ``POLYJOBS_PLUGINS``."""
    return PluginHost.load(modules=resolved.plugins.value, extra=extra)


@dataclass
class Session:
    """One command's resolved settings, plugins, registered queues and open backend."""

    settings: Settings
    host: PluginHost
    backend: Backend
    specs: dict[str, QueueSpec]

    def queue(self, name: str) -> Queue:
        return queue_for(name, self.specs, self.backend)


@asynccontextmanager
async def session(backend: str | None, *extra: object, **flags: Any) -> AsyncIterator[Session]:
    """Resolve settings, load plugins and open the backend for one command."""
    resolved = settings(backend=backend, **flags)
    host = plugin_host(resolved, *extra)
    async with open_backend(resolved.backend_url, host) as opened:
        yield Session(resolved, host, opened, host.queue_specs())


def on_queue(queue: str, backend: str | None, action: Callable[[Queue], Awaitable[str]]) -> None:
    """Run a one-queue command: open the backend, call ``action`` on the queue (full or short
    name), print the line it returns; errors become one line and exit code 1."""
    console = Console()

    async def go() -> None:
        async with session(backend) as s:
            console.line(await action(s.queue(queue)))

    run(go, console)


def find_spec(name: str, specs: dict[str, QueueSpec]) -> QueueSpec | None:
    """The registered queue called ``name`` (full or short name), if any."""
    if name in specs:
        return specs[name]
    for spec in specs.values():
        if spec.short_name == name:
            return spec
    return None


def queue_for(name: str, specs: dict[str, QueueSpec], backend: Backend) -> Queue:
    """A ``Queue`` for a registered queue (with its defaults and validation) or any name."""
    spec = find_spec(name, specs)
    return spec.make_queue(backend) if spec is not None else Queue(name, backend)


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` -> ``{"a": "1", "b": "2"}``."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise InvalidArgumentError(f"{what} must look like NAME=VALUE, got {pair!r}")
        out[name] = value
    return out
