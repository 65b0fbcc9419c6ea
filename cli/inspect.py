"""``polyjobs stats`` and ``polyjobs jobs list|show|retry|remove``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from polyjobs.cli.common import BackendOption, JsonOption, Session, on_queue, run, session
from polyjobs.cli.console import Console
from polyjobs.errors import JobNotFoundError
from polyjobs.queue import Queue, check_state
from polyjobs.redact import redact_text
from polyjobs.stats import QueueStats, queue_stats

COLUMNS = (
    "queue",
    "waiting",
    "active",
    "delayed",
    "completed",
    "failed",
    "paused",
    "workers",
    "done/min",
    "failed/min",
)


def _row(s: QueueStats) -> list[str]:
    plus = "+" if s.recent_capped else ""
    return [
        s.queue,
        str(s.waiting),
        str(s.active),
        str(s.delayed),
        str(s.completed),
        str(s.failed),
        "yes" if s.paused else "",
        str(s.workers),
        f"{s.completed_last_minute}{plus}",
        f"{s.failed_last_minute}{plus}",
    ]


def _table(stats: list[QueueStats]) -> Table:
    table = Table(header_style="bold")
    for column in COLUMNS:
        table.add_column(column)
    for s in stats:
        table.add_row(*_row(s))
    return table


async def _all_queue_names(s: Session) -> list[str]:
    """The registered queues, then any other queue the backend holds."""
    names = list(s.specs)
    return names + [n for n in await s.backend.queues() if n not in names]


def stats(
    backend: BackendOption = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    as_json: JsonOption = False,
) -> None:
    """Per queue: counts by state, paused, workers online, completed/failed in the last minute."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        async with session(backend) as s:
            if not watch:
                rows = await queue_stats(s.backend, await _all_queue_names(s))
                if as_json:
                    console.json([r.to_dict() for r in rows])
                else:
                    console.print(_table(rows))
                return
            with Live(console=console.out, auto_refresh=False) as live:
                while True:
                    rows = await queue_stats(s.backend, await _all_queue_names(s))
                    live.update(_table(rows), refresh=True)
                    await asyncio.sleep(interval)

    run(go, console)


jobs_app = typer.Typer(help="List, show, retry and remove jobs.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    state: Annotated[str, typer.Option("--state", "-s", help="Job state.")] = "waiting",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    backend: BackendOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the jobs of a queue in one state."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        async with session(backend) as s:
            q = s.queue(queue)
            found = await q.jobs(check_state(state), 0, limit - 1)
            if as_json:
                console.json([j.to_dict() for j in found])
                return
            console.table(
                ("id", "name", "attempts", "progress", "created", "detail"),
                [
                    (
                        j.id,
                        j.name,
                        j.attempts_made,
                        j.progress,
                        _when(j.timestamp),
                        (j.failed_reason or "")[:80],
                    )
                    for j in found
                ],
                title=f"{q.name}: {state} (first {limit})",
            )

    run(go, console)


@jobs_app.command("show")
def jobs_show(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    backend: BackendOption = None,
    as_json: JsonOption = False,
) -> None:
    """Everything about one job: data, options, progress, attempts, result or error, logs."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        async with session(backend) as s:
            q = s.queue(queue)
            job = await q.require_job(job_id)
            info = job.to_dict()
            info["logs"] = await job.logs()
            if as_json:
                console.json(info)
                return
            for key in ("id", "queue", "name", "state", "attempts_made", "progress", "priority"):
                console.line(f"{key:>14}: {info[key]}")
            for key in ("timestamp", "processed_on", "finished_on", "run_at"):
                console.line(f"{key:>14}: {_when(info[key])}")
            for key in ("data", "opts", "returnvalue", "failed_reason"):
                console.line(f"{key:>14}: {redact_text(repr(info[key]))}")
            if info["stacktrace"]:
                console.line("    stacktrace:")
                console.line(info["stacktrace"])
            console.line(f"{'logs':>14}: {len(info['logs'])} line(s)")
            for line in info["logs"]:
                console.line(f"    {line}")

    run(go, console)


@jobs_app.command("retry")
def jobs_retry(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    job_id: Annotated[str | None, typer.Argument(help="Job id (omit with --all-failed).")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed job.")] = False,
    backend: BackendOption = None,
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

    on_queue(queue, backend, act)


@jobs_app.command("remove")
def jobs_remove(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    backend: BackendOption = None,
) -> None:
    """Remove a job that is not active."""

    async def act(q: Queue) -> str:
        if not await q.remove(job_id):
            raise JobNotFoundError(f"job {job_id} of {q.name} does not exist or is active")
        return f"removed job {job_id} of {q.name}"

    on_queue(queue, backend, act)


def _when(ts: float | None) -> str:
    return "" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
