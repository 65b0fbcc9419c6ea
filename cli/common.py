"""What every command shares: settings, the plugin host, opening the backend, error mapping.

Commands open the backend through :func:`session`, saying what they do with it:

- ``read``: look only. A backend file that does not exist is not created: the command says
  where it looked and how to start one, and fails. The same for a database schema that does not
  exist or is older than this polyjobs (PostgreSQL): neither created nor migrated.
- ``write``: change what exists (retry, pause, drain...); same as ``read`` for a missing file.
- ``create``: may create the backend's storage (``enqueue``, ``schedule add``); says so when it
  did.

A backend that lives inside one process (``memory://``: no ``shared`` capability) is reached
through the ``polyjobs start`` that serves it on a socket in the state directory
(:mod:`polyjobs.serve`); without one, the command refuses instead of acting on an empty
backend that vanishes with it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from polyjobs.cli.console import Console, visible
from polyjobs.errors import (
    BackendUnavailableError,
    ConfigError,
    InvalidArgumentError,
    PolyjobsError,
)
from polyjobs.eventloop import run as run_main

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.plugins import PluginHost
    from polyjobs.queue import Queue
    from polyjobs.runtime import QueueSpec
    from polyjobs.settings import Settings

T = TypeVar("T")
Mode = Literal["read", "write", "create"]

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
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        "-A",
        help="The application whose queues to use: a module or module:attribute, such as "
        "myapp.jobs (default: $POLYJOBS_APP, polyjobs.toml, or every installed one).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CreateOption = Annotated[
    bool,
    typer.Option("--create", help="Allow a queue that is neither registered nor in the backend."),
]


def settings(**flags: Any) -> Settings:
    """Resolve the settings of this invocation (the environment is read here, once)."""
    from polyjobs.settings import load_settings

    return load_settings(flags=flags, environ=os.environ, cwd=Path.cwd())


def configured(*extra: object, **flags: Any) -> tuple[Settings, PluginHost]:
    """The settings and the plugins of this invocation: the settings say which plugins and
    application to load, those say which environment variables they read (their values are
    then resolved too)."""
    from polyjobs.settings import load_settings

    resolved = settings(**flags)
    host = plugin_host(resolved, *extra)
    declared = host.setting_names()
    if declared.names or declared.prefixes or declared.queue_fields:
        resolved = load_settings(flags=flags, environ=os.environ, cwd=Path.cwd(), declared=declared)
    return resolved, host


def run(
    make: Callable[[], Coroutine[Any, Any, T]],
    console: Console | None = None,
    *,
    interrupt_ends: bool = False,
) -> T | None:
    """Run a command's coroutine; map errors to one line on stderr and exit code 1.

    Ctrl-C is an error (exit 130) unless ``interrupt_ends``: then it is how the command is
    meant to end (``stats --watch``), and the exit is 0."""
    console = console or Console()
    try:
        return run_main(make())
    except typer.Exit:
        raise
    except PolyjobsError as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        if interrupt_ends:
            return None
        console.error("interrupted")
        raise typer.Exit(130) from None
    except OSError as exc:
        console.error(describe_os_error(exc))
        raise typer.Exit(1) from None
    except Exception as exc:
        if type(exc).__name__ == "Abort":  # a prompt got no answer (end of input)
            console.error("aborted; nothing was changed")
            raise typer.Exit(1) from None
        if os.environ.get("POLYJOBS_DEBUG"):
            raise
        logging.getLogger("polyjobs.cli").debug("unexpected error", exc_info=True)
        console.error(f"unexpected {type(exc).__name__}: {exc} (set POLYJOBS_DEBUG=1 for details)")
        raise typer.Exit(1) from None


def describe_os_error(exc: OSError) -> str:
    """``cannot read /x/y: permission denied (errno 13)`` rather than a class name."""
    reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
    where = exc.filename if exc.filename is not None else None
    code = f" (errno {exc.errno})" if exc.errno else ""
    return f"{where}: {reason}{code}" if where else f"{reason}{code}"


def plugin_host(resolved: Settings, *extra: object) -> PluginHost:
    """The plugins of this invocation: built-ins, entry points, ``POLYJOBS_PLUGINS``, and the
    application (``--app``), looked up from the working directory first, as ``python -m``
    would."""
    from polyjobs.plugins import PluginHost

    return PluginHost.load(
        modules=resolved.plugins.value,
        extra=extra,
        app=resolved.app.value,
        search_path=str(Path.cwd()),
    )


@dataclass
class Session:
    """One command's resolved settings, plugins, registered queues and open backend."""

    settings: Settings
    host: PluginHost
    backend: Backend
    specs: dict[str, QueueSpec]
    #: Where the backend is, as a person reads it (a file's absolute path, a redacted URL).
    location: str

    def queue(self, name: str) -> Queue:
        """A registered queue by full or short name, or any other name (no check)."""
        return queue_for(name, self.specs, self.backend)

    async def known_queue(
        self, name: str, *, create: bool = False, offer_create: bool = False
    ) -> Queue:
        """The queue ``name`` when it is registered or the backend knows it (it has jobs,
        workers or schedules); otherwise ``InvalidArgumentError`` with the closest known
        names (and a word on ``--create`` when ``offer_create``), unless ``create``."""
        import difflib

        spec = find_spec(name, self.specs)
        if spec is not None:
            return spec.make_queue(self.backend)
        stored = await self.backend.queues()
        if create or name in stored:
            return self.queue(name)
        known = sorted(set(self.specs) | set(stored))
        shorts = [s.short_name for s in self.specs.values() if s.short_name]
        close = difflib.get_close_matches(name, [*shorts, *known], n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        listed = ", ".join(known) or "none"
        raise InvalidArgumentError(
            f"unknown queue {name!r}: {hint}(known: {listed}; --create makes a new queue)"
            if offer_create
            else f"unknown queue {name!r}: {hint}(known: {listed})"
        )

    async def queue_names(self) -> list[str]:
        """The registered queues, then any other queue the backend holds."""
        names = list(self.specs)
        return names + [n for n in await self.backend.queues() if n not in names]


def describe_location(url: str, backend: Backend) -> str:
    """A backend's location as a person reads it: a local file's absolute path, else the
    redacted URL."""
    from polyjobs.backend import LocalFileBackend
    from polyjobs.redact import redact_url

    if isinstance(backend, LocalFileBackend):
        return str(Path(backend.path).absolute())
    return redact_url(url)


def _missing_file(resolved: Settings, path: Path) -> ConfigError:
    source = resolved.backend.source
    where = str(path.absolute())
    if source == "default":
        return ConfigError(
            f"no polyjobs database at {where} (the default, in the state directory "
            f"{resolved.home_dir}); nothing was created. Run `polyjobs start` in the project "
            "directory first, or point --backend or POLYJOBS_HOME at an existing one"
        )
    given = "--backend" if source == "flag" else source
    return ConfigError(
        f"no polyjobs database at {where} (from {given}); nothing was created. Check the "
        "path, or create it with `polyjobs start` or `polyjobs enqueue` on that backend"
    )


def _not_served(resolved: Settings, path: Path, *, stale: bool = False) -> ConfigError:
    from polyjobs.redact import redact_url

    url = redact_url(resolved.backend_url)
    found = (
        f"the socket {path} is left from a process that is gone"
        if stale
        else (f"no socket at {path}")
    )
    return ConfigError(
        f"{url} keeps jobs inside one process, and no `polyjobs start --backend {url}` is "
        f"running for {resolved.home_dir} ({found}); start one there first, or "
        "use the default SQLite backend (leave out --backend) to keep jobs between commands"
    )


@asynccontextmanager
async def open_session(resolved: Settings, host: PluginHost, mode: Mode) -> AsyncIterator[Session]:
    """Open the backend of ``resolved`` for one command (see the module docstring)."""
    from polyjobs.backend import CAP_SHARED, LocalFileBackend, StorageCreatingBackend

    url = resolved.backend_url
    backend = host.make_backend(url)
    location = describe_location(url, backend)
    if CAP_SHARED not in backend.capabilities:
        from polyjobs.serve import socket_path, socket_url

        sock = socket_path(resolved.home_dir)
        if not sock.exists():
            raise _not_served(resolved, sock)
        served = socket_url(sock)
        backend = host.make_backend(served)
        location = f"{location} served by the `polyjobs start` at {sock}"
    created = False
    if isinstance(backend, LocalFileBackend) and not Path(backend.path).exists():
        if mode != "create":
            raise _missing_file(resolved, Path(backend.path))
        created = True
    if mode != "create" and isinstance(backend, StorageCreatingBackend):
        backend.create_storage = False
    try:
        await backend.open()
    except BackendUnavailableError as exc:
        if CAP_SHARED in host.make_backend(url).capabilities:
            raise
        from polyjobs.serve import socket_path

        raise _not_served(resolved, socket_path(resolved.home_dir), stale=True) from exc
    try:
        yield Session(resolved, host, backend, host.queue_specs(), location)
        if created:
            Console().note(f"polyjobs: created a new database at {location}")
    finally:
        await backend.close()


@asynccontextmanager
async def session(
    backend: str | None,
    *extra: object,
    mode: Mode = "read",
    app: str | None = None,
    **flags: Any,
) -> AsyncIterator[Session]:
    """Resolve settings, load plugins and open the backend for one command."""
    resolved, host = configured(*extra, backend=backend, app=app, **flags)
    async with open_session(resolved, host, mode) as opened:
        yield opened


def on_queue(
    queue: str,
    backend: str | None,
    action: Callable[[Queue], Awaitable[str]],
    *,
    mode: Mode = "write",
    create: bool | None = None,
    confirm: str | None = None,
    app: str | None = None,
) -> None:
    """Run a one-queue command: open the backend, find the queue (full or short name; it must
    be known unless ``create``; None: the command has no ``--create``), call ``action`` on
    it, print the line it returns; errors become one line and exit code 1. ``confirm``: a
    question (``{queue}`` is the queue's name) to answer yes to before acting."""
    console = Console()

    async def go() -> None:
        async with session(backend, mode=mode, app=app) as s:
            q = await s.known_queue(queue, create=bool(create), offer_create=create is not None)
            if confirm is not None and not typer.confirm(
                visible(confirm.replace("{queue}", q.name)), default=False
            ):
                console.error("aborted; nothing was changed")
                raise typer.Exit(1)
            console.line(await action(q))

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
    from polyjobs.queue import Queue

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


def duration(value: str | None, what: str) -> float | None:
    """A duration flag (``1s``, ``500ms``, ``2``): seconds, or ``InvalidArgumentError``."""
    from polyjobs.options import seconds

    return None if value is None else seconds(value, what)
