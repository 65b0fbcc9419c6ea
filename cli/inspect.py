"""``polyjobs stats`` and ``polyjobs jobs list|show|retry|cancel|remove``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer

from polyjobs.cli.common import (
    AppOption,
    BackendOption,
    JsonOption,
    Session,
    duration,
    on_queue,
    run,
    session,
)
from polyjobs.cli.console import Column, Console, fit_table, fits
from polyjobs.clock import local_time
from polyjobs.errors import JobNotFoundError
from polyjobs.redact import redact_value

if TYPE_CHECKING:
    from rich.console import RenderableType

    from polyjobs.queue import Queue
    from polyjobs.stats import QueueStats

#: (header, compact header) of each number column of ``stats``
NUMBERS = (
    ("waiting", "wait"),
    ("active", "active"),
    ("delayed", "delay"),
    ("completed", "done"),
    ("failed", "failed"),
)
DETAIL_MAX = 100  # characters of a failure reason in `jobs list` (`jobs show` has it whole)


def _numbers(s: QueueStats) -> list[Any]:
    return [s.waiting, s.active, s.delayed, s.completed, s.failed]


def _hour(s: QueueStats) -> list[str]:
    """done/h, failed/h and the average processing time, from the backend's stored metrics."""
    if s.completed_last_hour is None:
        return ["-", "-", "-"]
    avg = s.avg_time_last_hour
    shown = "-" if avg is None else f"{avg * 1000:.0f}ms" if avg < 10 else f"{avg:.1f}s"
    return [str(s.completed_last_hour), str(s.failed_last_hour), shown]


def stats_view(
    rows: list[QueueStats], shorts: dict[str, str], width: int, caption: str | None
) -> RenderableType:
    """The stats table for ``width`` columns: full queue names and headers when they fit,
    else short names and headers (last-minute counts as ``done/failed``), else one block
    per queue."""
    plus = {s.queue: "+" if s.recent_capped else "" for s in rows}
    full_cols = [
        Column("queue", "key"),
        *(Column(h, "num") for h, _ in NUMBERS),
        Column("paused", "num"),
        Column("workers", "num"),
        Column("done/min", "num"),
        Column("failed/min", "num"),
    ]
    full_rows = [
        [
            s.queue,
            *_numbers(s),
            "yes" if s.paused else "",
            s.workers,
            f"{s.completed_last_minute}{plus[s.queue]}",
            f"{s.failed_last_minute}{plus[s.queue]}",
        ]
        for s in rows
    ]
    if any(s.completed_last_hour is not None for s in rows):
        wide_cols = [
            *full_cols,
            Column("done/h", "num"),
            Column("failed/h", "num"),
            Column("avg time", "num"),
        ]
        wide_rows = [[*row, *_hour(s)] for row, s in zip(full_rows, rows, strict=True)]
        if fits(wide_cols, wide_rows, width):
            return fit_table(wide_cols, wide_rows, width, caption=caption)
    if fits(full_cols, full_rows, width):
        return fit_table(full_cols, full_rows, width, caption=caption)
    compact_cols = [
        Column("queue", "key"),
        *(Column(h, "num") for _, h in NUMBERS),
        Column("paused", "num"),
        Column("wkrs", "num"),
        Column("last min", "num"),
    ]
    compact_rows = [
        [
            shorts.get(s.queue, s.queue),
            *_numbers(s),
            "yes" if s.paused else "",
            s.workers,
            f"{s.completed_last_minute}/{s.failed_last_minute}{plus[s.queue]}",
        ]
        for s in rows
    ]
    note = "short queue names; last min: done/failed"
    caption = f"{note}\n{caption}" if caption else note
    return fit_table(compact_cols, compact_rows, width, caption=caption)


async def _verdict(s: Session) -> str:
    """The verdict of ``polyjobs health`` with its defaults, as one line."""
    from polyjobs.health import check_health

    return "health: " + (await check_health(s.backend)).verdict()


def _caption(s: Session) -> str | None:
    """Where the numbers come from, when the command line does not say it."""
    if s.settings.backend.source == "flag":
        return None
    return f"backend: {s.location}"


def stats(
    backend: BackendOption = None,
    app: AppOption = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh in place (Ctrl-C ends).")
    ] = False,
    interval: Annotated[str, typer.Option(help="Time between refreshes (2s, 500ms...).")] = "2s",
    as_json: JsonOption = False,
) -> None:
    """Per queue: counts by state, paused, workers online, completed/failed in the last minute
    (and in the last hour, with the average processing time, where the backend keeps metrics)."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        from polyjobs.stats import queue_stats

        every = duration(interval, "--interval") or 0.0
        async with session(backend, app=app) as s:
            shorts = {n: sp.short_name for n, sp in s.specs.items() if sp.short_name}
            if not watch:
                rows = await queue_stats(s.backend, await s.queue_names())
                if as_json:
                    console.json([r.to_dict() for r in rows])
                else:
                    console.print(stats_view(rows, shorts, console.width, _caption(s)))
                    console.line(await _verdict(s))
                return
            await _watch(console, s, shorts, max(every, 0.1))

    run(go, console, interrupt_ends=watch)  # Ctrl-C is how one leaves --watch


async def _watch(console: Console, s: Session, shorts: dict[str, str], every: float) -> None:
    """Refresh in place on a terminal; elsewhere print each refresh after the last."""
    from rich.live import Live

    from polyjobs.stats import queue_stats

    async def view(rows: list[QueueStats]) -> RenderableType:
        caption = f"{_caption(s) or ''}  (every {every:g}s; Ctrl-C ends)".strip()
        caption = f"{await _verdict(s)}  {caption}"
        return stats_view(rows, shorts, console.width, caption)

    if console.json_mode or not console.is_terminal:
        while True:
            rows = await queue_stats(s.backend, await s.queue_names())
            if console.json_mode:
                console.json([r.to_dict() for r in rows])
            else:
                console.print(await view(rows))
            await asyncio.sleep(every)
    with Live(console=console.out, auto_refresh=False) as live:
        while True:
            rows = await queue_stats(s.backend, await s.queue_names())
            live.update(await view(rows), refresh=True)
            await asyncio.sleep(every)


jobs_app = typer.Typer(help="List, show, retry and remove jobs.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    state: Annotated[str, typer.Option("--state", "-s", help="Job state.")] = "waiting",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    backend: BackendOption = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the jobs of a queue in one state."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        from polyjobs.queue import check_state

        checked = check_state(state)
        async with session(backend, app=app) as s:
            q = await s.known_queue(queue)
            found = await q.jobs(checked, 0, limit - 1)
            if as_json:
                console.json([j.to_dict() for j in found])
                return
            if not found:
                console.line(f"{q.name}: no {state} jobs")
                return
            rows = [
                (
                    j.id,
                    j.name,
                    j.attempts_made,
                    _progress(j.progress),
                    _when(j.timestamp),
                    _detail(j.failed_reason),
                )
                for j in found
            ]
            cut = any(len(_first_line(j.failed_reason)) > DETAIL_MAX for j in found)
            notes = [f"see a whole job: polyjobs jobs show {queue} ID"] if cut else []
            if (where := _caption(s)) is not None:
                notes.append(where)
            console.table(
                (
                    Column("id", "key"),
                    Column("name"),
                    Column("tries", "num"),
                    Column("progress"),
                    Column("created", "key"),
                    Column("detail"),
                ),
                rows,
                title=f"{q.name}: {len(found)} {state} (first {limit})",
                caption="\n".join(notes) or None,
            )

    run(go, console)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _detail(reason: str | None) -> str:
    line = _first_line(reason)
    return line if len(line) <= DETAIL_MAX else line[: DETAIL_MAX - 1] + "…"


def _progress(value: Any) -> str:
    return "" if value is None else str(value)


@jobs_app.command("show")
def jobs_show(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    backend: BackendOption = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Everything about one job: data, options, progress, attempts, result or error, logs."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        from polyjobs.flow import family

        async with session(backend, app=app) as s:
            q = await s.known_queue(queue)
            job = await q.require_job(job_id)
            info = job.to_dict()
            info["logs"] = await job.logs()
            info.update(await family(job))
            info = redact_value(info)
            if as_json:
                console.json(info)
                return
            _show(console, info)

    run(go, console)


def _show(console: Console, info: dict[str, Any]) -> None:
    """One job as ``key: value`` lines; text from the job is shown, never interpreted."""
    import json

    for key in ("id", "queue", "name", "state", "attempts_made", "progress", "priority"):
        value = info[key]
        if key == "progress" and value is not None:  # a number or a JSON object: as JSON
            value = json.dumps(value, default=str, ensure_ascii=False)
        console.line(f"{key:>14}: {value}")
    for key in ("timestamp", "processed_on", "finished_on", "run_at"):
        console.line(f"{key:>14}: {_when(info[key])}")
    for key in ("data", "opts", "returnvalue"):
        console.line(f"{key:>14}: {json.dumps(info[key], default=str, ensure_ascii=False)}")
    console.line(f"{'failed_reason':>14}: {info['failed_reason'] or ''}")
    if info["stacktrace"]:
        console.line("    stacktrace:")
        console.line(info["stacktrace"])
    for key in ("parents", "children"):
        if info[key]:
            console.line(f"{key:>14}: {len(info[key])}")
        for rel in info[key]:
            console.line(f"    {rel['queue']}:{rel['id']} {rel['state']}")
    console.line(f"{'logs':>14}: {len(info['logs'])} line(s)")
    for line in info["logs"]:
        console.line(f"    {line}")


@jobs_app.command("retry")
def jobs_retry(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    job_id: Annotated[str | None, typer.Argument(help="Job id (omit with --all-failed).")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed job.")] = False,
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Send a failed job (or every failed job) back to waiting."""

    async def act(q: Queue) -> str:
        if all_failed:
            return f"retried {await q.retry_failed()} failed job(s) of {q.name}"
        if job_id is None:
            raise JobNotFoundError("give a job id, or --all-failed")
        if not await q.retry(job_id):
            raise JobNotFoundError(f"job {job_id} of {q.name} is not failed (or does not exist)")
        return f"job {job_id} of {q.name} is waiting again"

    on_queue(queue, backend, act, app=app)


@jobs_app.command("cancel")
def jobs_cancel(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (stored as the job's failed reason).")
    ] = "cancelled",
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Cancel a job: one not started fails now; a running one is stopped by its worker and
    fails, without retry, on any machine."""

    async def act(q: Queue) -> str:
        outcome = await q.cancel(job_id, reason)
        if outcome == "failed":
            return f"job {job_id} of {q.name} cancelled (it had not started): failed"
        if outcome == "requested":
            return f"job {job_id} of {q.name} is running: its worker was told to stop it"
        raise JobNotFoundError(
            f"job {job_id} of {q.name} cannot be cancelled: it has ended, waits for its "
            "children, or does not exist"
        )

    on_queue(queue, backend, act, app=app)


@jobs_app.command("remove")
def jobs_remove(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Remove a job that is not active."""

    async def act(q: Queue) -> str:
        if not await q.remove(job_id):
            raise JobNotFoundError(f"job {job_id} of {q.name} does not exist or is active")
        return f"removed job {job_id} of {q.name}"

    on_queue(queue, backend, act, app=app)


def _when(ts: float | None) -> str:
    return local_time(ts)
