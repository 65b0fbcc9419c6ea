"""``polyjobs board``: serve the web board (UI, JSON API, metrics) over the configured backend."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer

from polyjobs.cli.common import AppOption, BackendOption, run, session, settings
from polyjobs.cli.console import Console
from polyjobs.errors import ConfigError
from polyjobs.redact import redact_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from polyjobs.backend import Backend
    from polyjobs.listings import Listing
    from polyjobs.runtime import QueueSpec
    from polyjobs.settings import Settings

BOARD_MODULES = ("starlette", "uvicorn", "jinja2", "prometheus_client", "multipart")
MISSING_EXTRA = "the board needs the 'board' extra: pip install 'polyjobs[board]'"


def listing_settings(resolved: Settings) -> dict[str, str]:
    """What the applications' listings read their configuration from (their store...)."""
    values = {k: str(v) for k, v in resolved.plain_values().items() if v is not None}
    return {"POLYJOBS_HOME": str(resolved.home_dir), **values}


async def start_board(
    console: Console,
    resolved: Settings,
    specs: dict[str, QueueSpec],
    backend: Backend,
    host: str,
    port: int,
    listings: Mapping[str, Listing] | None = None,
) -> asyncio.Task[None]:
    """Serve the board from a running ``polyjobs start`` (as a task; cancel it to stop)."""
    try:
        from polyjobs.board import (
            TOKEN_ENV,
            BoardOptions,
            bind_socket,
            check_bind,
            serve_board,
        )
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in BOARD_MODULES:
            raise
        raise ConfigError(MISSING_EXTRA) from None
    token = resolved.values.get(TOKEN_ENV)
    options = BoardOptions(
        token=str(token.value) if token is not None and token.value else None,
        specs=specs,
        backend_label=redact_url(resolved.backend_url),
        listings=dict(listings or {}),
        settings=listing_settings(resolved),
    )
    check_bind(host, options)
    sock = bind_socket(host, port)
    task = asyncio.create_task(serve_board(backend, host, port, options, sock=sock))
    task.add_done_callback(lambda _: sock.close())
    shown = f"[{host}]" if ":" in host else host
    console.note(f"polyjobs board on http://{shown}:{sock.getsockname()[1]}/admin/queues")
    return task


def board(
    host: Annotated[str, typer.Option(help="Address to bind; not loopback needs a token.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8787,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Hide and refuse every action.")
    ] = False,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve a non-loopback address without a token.")
    ] = False,
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Serve the web board at http://HOST:PORT/admin/queues (token: $POLYJOBS_BOARD_TOKEN)."""
    console = Console()
    try:
        from polyjobs.board import (
            TOKEN_ENV,
            BoardOptions,
            bind_socket,
            check_bind,
            is_loopback,
            serve_board,
        )
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in BOARD_MODULES:
            raise
        console.error(MISSING_EXTRA)
        raise typer.Exit(1) from None

    async def go() -> None:
        token = settings(backend=backend).values.get(TOKEN_ENV)
        given = str(token.value) if token is not None and token.value else None
        options = BoardOptions(read_only=read_only, token=given, insecure=insecure)
        check_bind(host, options)
        async with session(backend, app=app) as s:
            options = replace(
                options,
                specs=s.specs,
                backend_label=redact_url(s.settings.backend_url),
                listings=s.host.listings(),
                settings=listing_settings(s.settings),
            )
            sock = bind_socket(host, port)
            task = asyncio.create_task(serve_board(s.backend, host, port, options, sock=sock))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, task.cancel)
            shown = f"[{host}]" if ":" in host else host
            url = f"http://{shown}:{sock.getsockname()[1]}/admin/queues"
            console.note(
                f"polyjobs board on {url} ({'read-only, ' if read_only else ''}Ctrl-C stops)"
            )
            if insecure and given is None and not is_loopback(host):
                console.note(
                    f"warning: --insecure: no token; anyone who can reach {shown} can "
                    f"{'read every queue' if read_only else 'read and act on every queue'}"
                )
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            finally:
                sock.close()

    run(go, console)
