"""``polyjobs start`` and ``polyjobs stop``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from polyjobs.cli import pidfile
from polyjobs.cli.common import (
    AppOption,
    BackendOption,
    configured,
    describe_location,
    describe_os_error,
    duration,
    parse_pairs,
    plugin_host,
    run,
    session,
    settings,
)
from polyjobs.cli.console import Console
from polyjobs.cli.logs import Events, configure_logging
from polyjobs.errors import ConfigError, PolyjobsError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from polyjobs.backend import Backend
    from polyjobs.cli.parent import ParentServing
    from polyjobs.hookspecs import Demo, DemoSetup
    from polyjobs.plugins import PluginHost
    from polyjobs.runtime import QueueSpec, Runtime
    from polyjobs.settings import Settings


def start(
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="Queue to run (repeatable).")
    ] = None,
    concurrency: Annotated[
        list[str] | None,
        typer.Option("--concurrency", "-c", help="NAME=N: a queue's concurrency (repeatable)."),
    ] = None,
    backend: BackendOption = None,
    app: AppOption = None,
    no_schedule: Annotated[
        bool, typer.Option("--no-schedule", help="Don't upsert or run schedules.")
    ] = False,
    burst: Annotated[
        bool, typer.Option("--burst", help="Stop once the queues have nothing left to do.")
    ] = False,
    grace: Annotated[
        str | None,
        typer.Option(help="How long active jobs get to finish on stop (30s, 500ms...)."),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="text (a live view on a terminal) or json (one JSON object per line).",
        ),
    ] = "text",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Run the application's demo in a temporary state directory (the Polymarket "
            "detector's: synthetic trades through its five queues, alerts on the console; no "
            "Redis, MongoDB or Discord needed).",
        ),
    ] = False,
    board: Annotated[
        bool, typer.Option("--board", help="Also serve the web board from this process.")
    ] = False,
    board_host: Annotated[str, typer.Option(help="The board's address.")] = "127.0.0.1",
    board_port: Annotated[int, typer.Option(min=0, max=65535, help="The board's port.")] = 8787,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve Prometheus metrics at http://METRICS_HOST:PORT/metrics (0: any port).",
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="The metrics server's address.")] = (
        "127.0.0.1"
    ),
    otel: Annotated[
        bool,
        typer.Option(
            "--otel",
            help="Trace adds and job runs with OpenTelemetry (the process's tracer provider; "
            "needs the 'otel' extra).",
        ),
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            "-P",
            min=1,
            max=256,
            envvar="POLYJOBS_PROCESSES",
            help="Run N worker processes (each one runs these queues on this backend), "
            "supervised by this one: crashed ones restarted, one stop for all, one live view.",
        ),
    ] = 1,
) -> None:
    """Run workers for the registered queues in the foreground until SIGINT/SIGTERM."""
    from polyjobs.cli.parent import ParentServing
    from polyjobs.cli.processes import supervised_slot, watch_parent

    console = Console()
    if log_format not in ("text", "json"):
        console.error(f"--log-format must be text or json, got {log_format!r}")
        raise typer.Exit(2)
    slot = supervised_slot()
    if slot is None and processes > 1:
        args = ["start", *_child_args(queue, concurrency, backend, app, grace, log_format)]
        args += [f for f, on in (("--no-schedule", no_schedule), ("--burst", burst)) if on]
        args += ["--otel"] if otel else []
        if metrics_port is not None:  # each worker serves its own counters on the next ports
            if metrics_port and metrics_port + processes > 65535:
                console.error(
                    f"--metrics-port {metrics_port} with --processes {processes}: the workers'"
                    f" ports {metrics_port + 1}..{metrics_port + processes} pass 65535"
                )
                raise typer.Exit(2)
            args += ["--metrics-host", metrics_host, "--metrics-port", str(metrics_port)]
        setup = None
        if demo:
            if burst:
                console.error(
                    "--processes does not combine with --demo --burst: the burst demo drives its"
                    " queues step by step from one process (a job, its result, the next) and"
                    " reports when they are idle"
                )
                raise typer.Exit(2)
            setup = run(lambda: _prepare_demo(backend, app), console)
            assert setup is not None
            args.append("--demo")
        try:
            shared = run(
                lambda: _shared_backend(
                    backend, app, grace, queue or [], concurrency or [], setup, console
                ),
                console,
            )
            assert shared is not None
            serving = ParentServing(
                live=console.is_terminal and log_format == "text",
                board=(board_host, board_port) if board else None,
                metrics=None if metrics_port is None else (metrics_host, metrics_port),
            )
            code = _supervise(
                console, args, processes, shared, burst, log_format == "json", serving
            )
        finally:
            if setup is not None:
                shutil.rmtree(setup[1].home, ignore_errors=True)
        raise typer.Exit(code)
    if slot is not None and metrics_port:
        metrics_port += slot  # the parent serves the port given, worker I the I-th after it
    if slot is not None:
        watch_parent()
    events = Events(console, "json" if log_format == "json" else "text")
    run(
        lambda: _start(
            events,
            queue or [],
            concurrency or [],
            backend,
            app,
            not no_schedule,
            burst,
            grace,
            log_format,
            demo,
            (board_host, board_port) if board else None,
            None if metrics_port is None else (metrics_host, metrics_port),
            otel,
        ),
        console,
    )


def _child_args(
    queue: list[str] | None,
    concurrency: list[str] | None,
    backend: str | None,
    app: str | None,
    grace: str | None,
    log_format: str,
) -> list[str]:
    """The flags a supervised child gets: the parent's own, as given."""
    args: list[str] = []
    for name in queue or []:
        args += ["--queue", name]
    for pair in concurrency or []:
        args += ["--concurrency", pair]
    for flag, value in (("--backend", backend), ("--app", app), ("--grace", grace)):
        if value is not None:
            args += [flag, value]
    return [*args, "--log-format", log_format]


async def _shared_backend(
    backend_url: str | None,
    app: str | None,
    grace: str | None,
    names: list[str],
    concurrency: list[str],
    demo: tuple[Demo, DemoSetup] | None = None,
    console: Console | None = None,
) -> tuple[Settings, PluginHost, list[QueueSpec]]:
    """The settings, plugins and queues of a supervising ``start``, once its backend is known to
    be one processes share and has been opened once (creating or migrating its storage before
    the children)."""
    from polyjobs.backend import CAP_SHARED
    from polyjobs.plugins import open_backend
    from polyjobs.redact import redact_url
    from polyjobs.runtime import specs_by_name

    flags: dict[str, Any] = {"backend": backend_url}
    if demo is not None:
        setup = demo[1]
        flags.update(backend=setup.backend_url, home=str(setup.home), settings=dict(setup.settings))
    resolved, host = configured(
        **flags,
        app=app,
        grace=duration(grace, "--grace"),
        concurrency=parse_pairs(concurrency, "--concurrency"),
    )
    registered = host.queue_specs()
    if not registered:
        raise ConfigError("no queues are registered: name your application with --app")
    # an unknown name: one line here, not one per worker
    specs = specs_by_name(registered, names) if names else list(registered.values())
    url = resolved.backend_url
    if CAP_SHARED not in host.make_backend(url).capabilities:
        raise ConfigError(
            f"--processes needs a backend that processes share (SQLite, Redis, PostgreSQL); "
            f"{redact_url(url)} lives inside one process"
        )
    async with open_backend(url, host) as opened:
        if demo is not None:
            from polyjobs.queue import Queue

            # the queues as a worker's runtime has them: the spec's job options and validation
            known = {s.name: s for s in demo[0].demo_specs(registered.values())}

            def queue(name: str) -> Queue:
                spec = known.get(name)
                return spec.make_queue(opened) if spec is not None else Queue(name, opened)

            report = console.note if console is not None else None
            await demo[0].seed_demo(queue, report)  # type: ignore[attr-defined]
    return resolved, host, specs


async def _prepare_demo(backend_url: str | None, app: str | None) -> tuple[Demo, DemoSetup]:
    """A supervising ``start --demo``: the demo prepared once, for every worker (they read
    where it is from :data:`~polyjobs.cli.processes.SUPERVISED_DEMO`)."""
    import json

    from polyjobs.cli.processes import SUPERVISED_DEMO

    if backend_url is not None:
        raise ConfigError("--demo runs on its own embedded backend; leave out --backend")
    demo_mode = plugin_host(settings(app=app)).demo()
    if not callable(getattr(demo_mode, "seed_demo", None)):
        raise ConfigError(
            "this application's demo runs in one process (it has no seed_demo): leave out"
            " --processes"
        )
    setup = demo_mode.prepare_demo(burst=False)
    os.environ[SUPERVISED_DEMO] = json.dumps(
        {
            "home": str(setup.home),
            "backend_url": setup.backend_url,
            "settings": dict(setup.settings),
        }
    )
    Console().note(f"polyjobs demo: state in {setup.home} (removed on exit)")
    return demo_mode, setup


def _supervise(
    console: Console,
    args: list[str],
    count: int,
    shared: tuple[Settings, PluginHost, list[QueueSpec]],
    burst: bool,
    json_lines: bool,
    serving: ParentServing,
) -> int:
    """Claim the pid file, start what the parent serves, and supervise ``count`` children (in
    the main thread: signals)."""
    from polyjobs.cli.parent import ParentServices
    from polyjobs.cli.processes import Supervisor
    from polyjobs.redact import redact_url

    resolved, host, specs = shared
    try:
        pidfile.write(resolved.home_dir, redact_url(resolved.backend_url))
    except PolyjobsError as exc:
        console.error(str(exc))
        return 1
    services = ParentServices(console, resolved, host, specs, serving) if serving else None
    try:
        grace = float(resolved.grace.value)
        supervisor = Supervisor(
            console, args, count, burst=burst, grace=grace, json_lines=json_lines
        )
        if services is not None:
            try:
                services.start(supervisor)
            except (PolyjobsError, OSError) as exc:
                console.error(
                    str(exc) if isinstance(exc, PolyjobsError) else describe_os_error(exc)
                )
                return 1
        try:
            return supervisor.run()
        finally:
            if services is not None:
                services.stop()
    finally:
        pidfile.remove(resolved.home_dir)


async def _start(
    events: Events,
    names: list[str],
    concurrency: list[str],
    backend_url: str | None,
    app: str | None,
    schedule: bool,
    burst: bool,
    grace: str | None,
    log_format: str,
    demo: bool = False,
    board: tuple[str, int] | None = None,
    metrics: tuple[str, int] | None = None,
    otel: bool = False,
) -> None:

    if demo and backend_url is not None:
        raise ConfigError("--demo runs on its own embedded backend; leave out --backend")
    flags: dict[str, Any] = {
        "backend": backend_url,
        "app": app,
        "grace": duration(grace, "--grace"),
    }
    demo_mode = plugin_host(settings(app=app)).demo() if demo else None
    prepared = _supervised_demo() if demo_mode is not None else None
    if demo_mode is not None and prepared is not None:  # the parent prepared it and seeded it
        demo_mode = _SeededDemo(demo_mode)
        flags.update(prepared)
        setup = None
    else:
        setup = demo_mode.prepare_demo(burst=burst) if demo_mode is not None else None
    if setup is not None:
        events.note(f"polyjobs demo: state in {setup.home} (removed on exit)")
        flags.update(backend=setup.backend_url, home=str(setup.home), settings=dict(setup.settings))
    try:
        await _start_with(
            events, names, concurrency, flags, schedule, burst, demo_mode, board, metrics, otel
        )
    finally:
        if setup is not None:
            shutil.rmtree(setup.home, ignore_errors=True)


def _supervised_demo() -> dict[str, Any] | None:
    """In a worker of ``start -P N --demo``: the flags pointing at the demo its parent
    prepared (None elsewhere)."""
    import json

    from polyjobs.cli.processes import SUPERVISED_DEMO, supervised_slot

    given = os.environ.get(SUPERVISED_DEMO)
    if supervised_slot() is None or not given:
        return None
    try:
        found = json.loads(given)
        return {
            "backend": str(found["backend_url"]),
            "home": str(found["home"]),
            "settings": {str(k): str(v) for k, v in found["settings"].items()},
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConfigError(
            f"{SUPERVISED_DEMO} is not the demo a supervising `start --demo` prepared"
            " (it is set by that command for its workers; unset it)"
        ) from None


class _SeededDemo:
    """A supervised worker's demo: its parent prepared and seeded it, the worker runs the
    queues as the demo shapes them."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo

    def prepare_demo(self, *, burst: bool = False) -> DemoSetup:
        return self.demo.prepare_demo(burst=burst)

    def demo_specs(self, specs: Iterable[QueueSpec]) -> list[QueueSpec]:
        return self.demo.demo_specs(specs)

    async def run_demo(
        self,
        runtime: Runtime,
        *,
        burst: bool = False,
        grace: float = 30.0,
        report: Callable[[str], None] | None = None,
    ) -> None:
        await runtime.run(burst=burst, grace=grace)


async def _start_with(
    events: Events,
    names: list[str],
    concurrency: list[str],
    flags: dict[str, Any],
    schedule: bool,
    burst: bool,
    demo_mode: Demo | None,
    board: tuple[str, int] | None,
    metrics: tuple[str, int] | None = None,
    otel: bool = False,
) -> None:
    from polyjobs.cli.live import JobFeed, Reporter
    from polyjobs.cli.metrics import metrics_plugin, open_telemetry
    from polyjobs.cli.processes import supervised_slot
    from polyjobs.plugins import open_backend
    from polyjobs.runtime import Runtime, specs_by_name
    from polyjobs.settings import apply_queue_overrides

    console = events.console
    live = console.is_terminal and events.format == "text"
    feed = JobFeed()
    counted = [metrics_plugin()] if metrics is not None else []
    resolved, host = configured(
        # a supervised worker's text lines say what went wrong, not every completed job
        Reporter(events, live, completed=events.format == "json" or supervised_slot() is None),
        feed,
        *counted,
        **flags,
        concurrency=parse_pairs(concurrency, "--concurrency"),
    )
    registered = host.queue_specs()
    if not registered:
        if resolved.app.value is not None:
            raise ConfigError(f"application {resolved.app.value!r} declares no queue")
        raise ConfigError(
            "no queues are registered: name your application with --app (see `polyjobs "
            "start --help`), or install one (applications are found through entry points: an "
            "editable install made before one was added needs `pip install -e .` again)"
        )
    specs = specs_by_name(registered, names) if names else list(registered.values())
    if demo_mode is not None:
        specs = demo_mode.demo_specs(specs)
    specs = apply_queue_overrides(specs, resolved)
    configure_logging(events)
    async with open_backend(resolved.backend_url, host) as backend:
        runtime = Runtime(
            specs,
            backend,
            resources=host.resources(),
            settings={"POLYJOBS_HOME": str(resolved.home_dir), **resolved.plain_values()},
            plugins=host,
            schedule=schedule and not (demo_mode is not None and burst),
            known_specs=registered,
            telemetry=open_telemetry(console) if otel else None,
        )
        grace_s = float(resolved.grace.value)

        async def go() -> None:
            if demo_mode is not None:
                await demo_mode.run_demo(runtime, burst=burst, grace=grace_s, report=events.note)
                return
            await runtime.run(burst=burst, grace=grace_s)
            if burst and feed.finished == 0:
                hint = (
                    ""
                    if resolved.app.value is not None
                    else " (to run the pipeline once over a file of trades: polyjobs replay"
                    " FILE.jsonl)"
                )
                events.note(
                    "polyjobs: --burst found nothing to do: no job was waiting or delayed, and"
                    " schedules only add jobs at their next slot" + hint
                )

        serving = Serving(board, metrics, counted[0] if counted else None)
        await _serve_and_run(
            events, resolved, registered, backend, runtime, specs, serving, go, feed, live
        )


@dataclass(frozen=True, slots=True)
class Serving:
    """What ``start`` serves besides running jobs: the board, the metrics (host, port)."""

    board: tuple[str, int] | None = None
    metrics: tuple[str, int] | None = None
    counted: Any = None  # the JobMetrics plugin of this process, with metrics


async def _serve_and_run(
    events: Events,
    resolved: Settings,
    registered: dict[str, QueueSpec],
    backend: Backend,
    runtime: Runtime,
    specs: list[QueueSpec],
    serving: Serving,
    go: Any,
    feed: Any,
    live: bool,
) -> None:
    """Claim the pid file, serve an in-process backend to other commands, start the board and
    the metrics, run (under the live view on a terminal), and undo all of it."""
    from polyjobs.backend import CAP_SHARED
    from polyjobs.cli.board import start_board
    from polyjobs.cli.live import LiveView
    from polyjobs.cli.metrics import start_metrics
    from polyjobs.cli.processes import supervised_slot
    from polyjobs.redact import redact_url
    from polyjobs.serve import serve_backend, socket_path

    console = events.console
    url = redact_url(resolved.backend_url)
    claim = supervised_slot() is None  # a supervised child leaves the pid file to its parent
    if claim:
        pidfile.write(resolved.home_dir, url)
    tasks: list[asyncio.Task[None]] = []
    served = contextlib.AsyncExitStack()
    try:
        if CAP_SHARED not in backend.capabilities:
            # a backend inside this process: other commands reach it through a socket
            sock = await served.enter_async_context(
                serve_backend(backend, socket_path(resolved.home_dir))
            )
            events.note(
                f"polyjobs: serving {url} to other commands at {sock} (it ends with this process)"
            )
        if serving.board is not None:
            from polyjobs.plugins import PluginHost

            host = runtime.plugins
            listings = host.listings() if isinstance(host, PluginHost) else {}
            tasks.append(
                await start_board(
                    console, resolved, registered, backend, *serving.board, listings=listings
                )
            )
        if serving.metrics is not None:
            tasks.append(
                await start_metrics(
                    console, backend, list(runtime.specs), serving.counted, *serving.metrics
                )
            )
        events.note(
            f"polyjobs: backend {describe_location(resolved.backend_url, backend)} "
            f"({resolved.backend.source}); queues: "
            + ", ".join(f"{s.name} (concurrency {s.concurrency})" for s in specs),
            event="started",
        )
        if live:
            shorts = {s.name: s.short_name for s in specs if s.short_name}
            await LiveView(console, runtime, feed, shorts).run(go)
        else:
            await go()
        events.note("polyjobs: stopped", event="stopped")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await served.aclose()
        if claim:
            pidfile.remove(resolved.home_dir)


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
    from polyjobs.control import request_stop_all, wait_until_no_workers

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
