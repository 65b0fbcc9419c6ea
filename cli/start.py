"""``polyjobs start`` and ``polyjobs stop``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from polyjobs.backend import CAP_SHARED
from polyjobs.cli import pidfile
from polyjobs.cli.board import start_board
from polyjobs.cli.common import (
    BackendOption,
    describe_location,
    duration,
    parse_pairs,
    plugin_host,
    run,
    session,
    settings,
)
from polyjobs.cli.console import Console
from polyjobs.control import request_stop_all, wait_until_no_workers
from polyjobs.errors import ConfigError, PolyjobsError
from polyjobs.hookspecs import hookimpl
from polyjobs.plugins import open_backend
from polyjobs.processors import demo as demo_mode
from polyjobs.redact import redact_text, redact_url
from polyjobs.runtime import Runtime, specs_by_name
from polyjobs.serve import serve_backend, socket_path
from polyjobs.settings import Settings, apply_queue_overrides

REPORTED = ("completed", "failed", "retrying", "stalled")


class Reporter:
    """A plugin that turns job events into log lines (text or JSON) and feeds the live view."""

    def __init__(self, console: Console, log_format: str, live: bool) -> None:
        self.console = console
        self.log_format = log_format
        self.live = live
        self.progress: dict[tuple[str, str], Any] = {}
        self.failures: deque[str] = deque(maxlen=5)
        self.finished = 0  # jobs completed or failed (for good or to be retried)

    @hookimpl
    def polyjobs_job_event(
        self, queue: str, event: str, job_id: str, payload: Mapping[str, Any]
    ) -> None:
        key = (queue, job_id)
        if event in ("completed", "failed", "retrying"):
            self.finished += 1
        if event == "progress":
            self.progress[key] = payload.get("progress")
            return
        self.progress.pop(key, None)
        if event in ("failed", "retrying"):
            self.failures.append(f"{queue} {job_id}: {payload.get('failed_reason')}")
        if self.live or event not in REPORTED:
            return
        if self.log_format == "json":
            record = {"ts": time.time(), "event": event, "queue": queue, "job": job_id, **payload}
            self.console.line(json.dumps(record, default=str))
        else:
            detail = payload.get("failed_reason") or ""
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            self.console.line(f"{stamp} {event} {queue} {job_id} {detail}".rstrip())


def start(
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="Queue to run (repeatable).")
    ] = None,
    concurrency: Annotated[
        list[str] | None,
        typer.Option("--concurrency", "-c", help="NAME=N: a queue's concurrency (repeatable)."),
    ] = None,
    backend: BackendOption = None,
    no_schedule: Annotated[
        bool, typer.Option("--no-schedule", help="Don't upsert or run schedules.")
    ] = False,
    burst: Annotated[
        bool, typer.Option("--burst", help="Stop once the queues have nothing left to do.")
    ] = False,
    grace: Annotated[
        str | None, typer.Option(help="Seconds active jobs get to finish on stop.")
    ] = None,
    log_format: Annotated[
        str, typer.Option("--log-format", help="text or json (used when not on a terminal).")
    ] = "text",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Replay synthetic trades through all five queues in a temporary state "
            "directory, alerts on the console (no Redis, MongoDB or Discord needed).",
        ),
    ] = False,
    board: Annotated[
        bool, typer.Option("--board", help="Also serve the web board from this process.")
    ] = False,
    board_host: Annotated[str, typer.Option(help="The board's address.")] = "127.0.0.1",
    board_port: Annotated[int, typer.Option(min=0, max=65535, help="The board's port.")] = 8787,
) -> None:
    """Run workers for the registered queues in the foreground until SIGINT/SIGTERM."""
    console = Console()
    if log_format not in ("text", "json"):
        console.error(f"--log-format must be text or json, got {log_format!r}")
        raise typer.Exit(2)
    run(
        lambda: _start(
            console,
            queue or [],
            concurrency or [],
            backend,
            not no_schedule,
            burst,
            grace,
            log_format,
            demo,
            (board_host, board_port) if board else None,
        ),
        console,
    )


async def _start(
    console: Console,
    names: list[str],
    concurrency: list[str],
    backend_url: str | None,
    schedule: bool,
    burst: bool,
    grace: str | None,
    log_format: str,
    demo: bool = False,
    board: tuple[str, int] | None = None,
) -> None:
    if demo and backend_url is not None:
        raise ConfigError("--demo runs on its own embedded backend; leave out --backend")
    flags: dict[str, Any] = {"backend": backend_url, "grace": grace}
    setup = demo_mode.prepare_demo(burst=burst) if demo else None
    if setup is not None:
        console.note(f"polyjobs demo: state in {setup.home} (removed on exit)")
        flags.update(backend=setup.backend_url, home=str(setup.home), settings=setup.settings)
    try:
        await _start_with(
            console, names, concurrency, flags, schedule, burst, log_format, demo, board
        )
    finally:
        if setup is not None:
            shutil.rmtree(setup.home, ignore_errors=True)


async def _start_with(
    console: Console,
    names: list[str],
    concurrency: list[str],
    flags: dict[str, Any],
    schedule: bool,
    burst: bool,
    log_format: str,
    demo: bool,
    board: tuple[str, int] | None,
) -> None:
    resolved = settings(**flags, concurrency=parse_pairs(concurrency, "--concurrency"))
    live = console.is_terminal and log_format == "text"
    reporter = Reporter(console, log_format, live)
    host = plugin_host(resolved, reporter)
    registered = host.queue_specs()
    if not registered:
        raise ConfigError("no queues are registered (is the polyjobs.processors plugin installed?)")
    specs = specs_by_name(registered, names) if names else list(registered.values())
    specs = apply_queue_overrides(demo_mode.demo_specs(specs) if demo else specs, resolved)
    _configure_logging(log_format)
    async with open_backend(resolved.backend_url, host) as backend:
        runtime = Runtime(
            specs,
            backend,
            resources=host.resources(),
            settings={"POLYJOBS_HOME": str(resolved.home_dir), **resolved.plain_values()},
            plugins=host,
            schedule=schedule and not (demo and burst),
            known_specs=registered,
        )
        grace_s = float(resolved.grace.value)

        def go() -> Awaitable[Any]:
            if demo:
                return demo_mode.run_demo(runtime, burst=burst, grace=grace_s, report=console.note)
            return runtime.run(burst=burst, grace=grace_s)

        pidfile.write(resolved.home_dir, redact_url(resolved.backend_url))
        board_task = None
        served = contextlib.AsyncExitStack()
        try:
            if CAP_SHARED not in backend.capabilities:
                # a backend inside this process: other commands reach it through a socket
                sock = await served.enter_async_context(
                    serve_backend(backend, socket_path(resolved.home_dir))
                )
                console.note(
                    f"polyjobs: serving {redact_url(resolved.backend_url)} to other "
                    f"commands at {sock} (it ends with this process)"
                )
            if board is not None:
                board_task = await start_board(console, resolved, registered, backend, *board)
            console.note(
                f"polyjobs: backend {describe_location(resolved.backend_url, backend)} "
                f"({resolved.backend.source}); queues: "
                + ", ".join(f"{s.name} (concurrency {s.concurrency})" for s in specs)
            )
            if live:
                await _run_live(runtime, reporter, go, console)
            else:
                await go()
            if burst and not demo and reporter.finished == 0:
                console.note(
                    "polyjobs: --burst found nothing to do: no job was waiting or delayed, and"
                    " schedules only add jobs at their next slot"
                )
            console.note("polyjobs: stopped")
        finally:
            if board_task is not None:
                board_task.cancel()
                await asyncio.gather(board_task, return_exceptions=True)
            await served.aclose()
            pidfile.remove(resolved.home_dir)


async def _run_live(
    runtime: Runtime, reporter: Reporter, go: Callable[[], Awaitable[Any]], console: Console
) -> None:
    with Live(console=console.out, auto_refresh=False, transient=False) as live:
        task = asyncio.create_task(_refresh_loop(runtime, reporter, live))
        try:
            await go()
        finally:
            task.cancel()


async def _refresh_loop(runtime: Runtime, reporter: Reporter, live: Live) -> None:
    """Redraw the live view every second; a failing redraw never stops the workers."""
    while True:
        try:
            live.update(await _view(runtime, reporter), refresh=True)
        except Exception as exc:
            logging.getLogger(__name__).debug("live view redraw failed: %s", exc)
        await asyncio.sleep(1.0)


async def _view(runtime: Runtime, reporter: Reporter) -> Table:
    table = Table(title="polyjobs", header_style="bold")
    for column in ("queue", "waiting", "active", "delayed", "completed", "failed", "paused"):
        table.add_column(column)
    for name, queue in runtime.queues.items():
        counts = await queue.counts()
        table.add_row(
            name,
            *(str(counts[k]) for k in ("waiting", "active", "delayed", "completed", "failed")),
            "yes" if counts["paused"] else "",
        )
    for (queue_name, job_id), progress in list(reporter.progress.items())[:10]:
        table.add_row(f"  ↳ {queue_name} {job_id}", _bar(progress), "", "", "", "", "")
    for failure in reporter.failures:
        table.add_row(f"  ✗ {redact_text(failure)[:90]}", "", "", "", "", "", "")
    return table


def _bar(progress: Any) -> str:
    if isinstance(progress, int | float):
        filled = max(0, min(20, int(progress / 5)))
        return "█" * filled + "░" * (20 - filled) + f" {progress:.0f}%"
    return str(progress)[:30]


def _configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_redact_record)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    level = logging.INFO if os.environ.get("POLYJOBS_DEBUG") is None else logging.DEBUG
    logging.getLogger("polyjobs").setLevel(level)
    # httpx logs every request URL at INFO; URLs may carry tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _redact_record(record: logging.LogRecord) -> bool:
    """Rewrite a record so that no secret reaches any handler."""
    record.msg = redact_text(record.getMessage())
    record.args = ()
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": redact_text(record.getMessage()),
            }
        )


def stop(
    timeout: Annotated[str, typer.Option(help="How long to wait for it to exit (30s...).")] = "30s",
    force: Annotated[
        bool, typer.Option("--force", help="Stop at once, handing unfinished jobs back.")
    ] = False,
    all_instances: Annotated[
        bool,
        typer.Option(
            "--all", help="Ask every instance sharing the backend, on any machine, to stop."
        ),
    ] = False,
    backend: BackendOption = None,
) -> None:
    """Stop the `polyjobs start` running from this state directory, and wait until it exits."""
    console = Console()
    if all_instances:
        wait_all = run(lambda: _duration(timeout, "--timeout"), console) or 0.0
        run(lambda: _stop_all(console, backend, 0.0 if force else None, wait_all), console)
        return
    resolved = run(lambda: _settings_only(), console)
    assert resolved is not None
    wait_s = run(lambda: _duration(timeout, "--timeout"), console) or 0.0
    home = resolved.home_dir
    info = pidfile.read(home)
    if info is None:
        console.error(f"no polyjobs instance is running here (no pid file in {home})")
        raise typer.Exit(1)
    if not pidfile.alive(info.pid):
        pidfile.pid_path(home).unlink(missing_ok=True)
        console.error(f"no polyjobs instance is running (removed a stale pid file for {info.pid})")
        raise typer.Exit(1)
    os.kill(info.pid, signal.SIGTERM)
    if force:
        time.sleep(0.2)
        os.kill(info.pid, signal.SIGTERM)  # the second signal forces
    deadline = time.monotonic() + wait_s
    while pidfile.alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pidfile.alive(info.pid):
        console.error(f"polyjobs (pid {info.pid}) did not exit within {wait_s:g}s")
        raise typer.Exit(1)
    console.line(f"stopped polyjobs (pid {info.pid}, backend {info.backend})")


async def _stop_all(
    console: Console, backend: str | None, grace: float | None, timeout: float
) -> None:
    async with session(backend) as s:
        grace_s = float(s.settings.grace.value) if grace is None else grace
        await request_stop_all(s.backend, grace_s, f"{socket.gethostname()}:{os.getpid()}")
        names = sorted(set(s.specs) | set(await s.backend.queues()))
        before = 0
        for name in names:
            before += len(await s.backend.list_workers(name))
        console.note(f"asked every instance to stop (grace {grace_s:g}s); {before} worker(s)")
        left = await wait_until_no_workers(s.backend, names, timeout)
        if left:
            raise PolyjobsError(f"{len(left)} worker(s) still online after {timeout:g}s")
        console.line(f"every instance stopped ({before} worker(s) left the registry)")


async def _settings_only() -> Settings:
    return settings()


async def _duration(value: str, what: str) -> float | None:
    return duration(value, what)
