"""Build the board's ASGI app over an open backend, and serve it (alone or inside a running
instance's event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from polyjobs.board import api, pages
from polyjobs.board.metrics import FinishedJobs, Metrics
from polyjobs.board.options import BoardOptions, check_bind, loopback_hosts
from polyjobs.board.sampler import Sampler
from polyjobs.board.security import Security, SecurityMiddleware
from polyjobs.board.service import BoardService
from polyjobs.errors import (
    BackendError,
    InvalidArgumentError,
    JobNotFoundError,
    PolyjobsError,
)
from polyjobs.listen import listening_socket
from polyjobs.redact import redact_text, redact_url

if TYPE_CHECKING:
    from polyjobs.backend import Backend

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _status(exc: PolyjobsError) -> int:
    if isinstance(exc, JobNotFoundError):
        return 404
    if isinstance(exc, InvalidArgumentError):
        return 400
    if isinstance(exc, BackendError):
        return 503
    return 500


def create_app(backend: Backend, options: BoardOptions | None = None) -> Starlette:
    """The board's ASGI app over ``backend`` (opened and closed by the caller).

    The app samples throughput in the background while it runs (its lifespan); mount it as
    the root app of a server (``serve_board`` does).
    """
    options = options or BoardOptions()
    options = replace(options, backend_label=redact_url(options.backend_label))
    service = BoardService(backend, options)
    finished = FinishedJobs(backend)
    sampler = Sampler(service, options.sample_interval, options.history, finished)
    metrics = Metrics(service, finished)
    security = Security(options)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["version"] = _version()
    templates.env.globals["listings"] = [(k, v.title) for k, v in options.listings.items()]

    async def metrics_route(request: Request) -> Response:
        return Response(await metrics.render(), media_type=PROMETHEUS_TEXT)

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PolyjobsError)
        status, message = _status(exc), redact_text(str(exc))
        if status >= 500:
            log.warning("board: %s %s failed: %s", request.method, request.url.path, message)
        if request.url.path.startswith("/api"):
            return api.error_response(status, message)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"message": message, "status": status, "backend_label": options.backend_label},
            status_code=status,
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if request.url.path.startswith("/api"):
            return api.error_response(exc.status_code, message)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"message": message, "status": exc.status_code, "backend_label": options.backend_label},
            status_code=exc.status_code,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(sampler.run(), name="polyjobs-board-sampler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = Starlette(
        routes=[
            *pages.Pages(service, sampler, security, templates).routes(),
            *api.Api(service, sampler, security).routes(),
            Route("/metrics", metrics_route),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        exception_handlers={PolyjobsError: on_error, HTTPException: on_http_error},
        lifespan=lifespan,
    )
    app.add_middleware(SecurityMiddleware, security=security)
    app.state.sampler = sampler
    app.state.service = service
    return app


def _version() -> str:
    from polyjobs import __version__

    return __version__


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner (the CLI or a Runtime)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port); ``ConfigError`` if taken."""
    return listening_socket(host, port, "the board")


async def serve_board(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 8787,
    options: BoardOptions | None = None,
    *,
    sock: socket.socket | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve the board on ``host:port`` until cancelled; usable as a task in any event loop.

    Refuses (``ConfigError``) a non-loopback ``host`` without a token unless
    ``options.insecure``. It installs no signal handler: cancel the task to stop it (the
    server then closes its connections before the cancellation goes on). ``sock`` is an
    already bound socket to serve on instead; ``started`` is set once it accepts connections.
    """
    options = options or BoardOptions()
    check_bind(host, options)
    hosts = loopback_hosts(host, options)
    if hosts is not None and options.allowed_hosts is None:
        options = replace(options, allowed_hosts=hosts)
    listener = sock or bind_socket(host, port)
    config = uvicorn.Config(
        create_app(backend, options),
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[listener]))
    waiter = asyncio.ensure_future(_wait_started(server, started))
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
        raise
    finally:
        waiter.cancel()
        if sock is None:
            listener.close()


async def _wait_started(server: uvicorn.Server, started: asyncio.Event | None) -> Any:
    if started is None:
        return
    while not server.started:
        await asyncio.sleep(0.02)
    started.set()
