"""``polyjobs schedule list|add|remove|run-now``."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from polyjobs.cli.common import (
    AppOption,
    BackendOption,
    CreateOption,
    JsonOption,
    duration,
    on_queue,
    run,
    session,
)
from polyjobs.cli.console import Column, Console
from polyjobs.cli.enqueue import read_data
from polyjobs.errors import JobNotFoundError

if TYPE_CHECKING:
    from polyjobs.backend import ScheduleRecord
    from polyjobs.queue import Queue

schedule_app = typer.Typer(
    help="Repeatable jobs: list, add, remove, run now.", no_args_is_help=True
)
CRON_HELP = (
    "5 fields (minute hour day month weekday, e.g. '0 * * * *') or 6 with seconds first as in "
    "BullMQ ('*/5 * * * * *': every 5 seconds)."
)


def next_runs(sched: ScheduleRecord, count: int) -> list[float]:
    """The schedule's next ``count`` slots, its stored next run first."""
    from polyjobs.scheduling import Cadence

    cadence = Cadence(sched.every, sched.cron, sched.tz)
    runs, t = [sched.next_run], sched.next_run
    for _ in range(count - 1):
        t = cadence.next_after(t)
        runs.append(t)
    return runs


def _cadence(every: float | None, cron: str | None, tz: str | None) -> str:
    return f"every {every:g}s" if every else f"{cron} {tz or 'UTC'}"


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@schedule_app.command("list")
def schedule_list(
    queue: Annotated[str | None, typer.Argument(help="Only this queue.")] = None,
    upcoming: Annotated[int, typer.Option(help="Next run times to show.", min=1, max=100)] = 3,
    backend: BackendOption = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every schedule with its cadence and next run times."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        async with session(backend, app=app) as s:
            if queue:
                queues = [await s.known_queue(queue)]
            else:
                queues = [s.queue(n) for n in sorted(set(s.specs) | set(await s.backend.queues()))]
            rows: list[dict[str, Any]] = []
            for q in queues:
                for sched in await q.schedules():
                    rows.append(
                        {
                            "queue": q.name,
                            "key": sched.key,
                            "name": sched.name,
                            "every": sched.every,
                            "cron": sched.cron,
                            "tz": sched.tz,
                            "missed": sched.missed,
                            "next_runs": next_runs(sched, upcoming),
                        }
                    )
            if as_json:
                console.json(rows)
                return
            if not rows:
                where = queues[0].name if queue else "any queue"
                console.line(f"no schedules in {where}")
                return
            console.table(
                (
                    Column("queue", "key"),
                    Column("key", "key"),
                    Column("cadence"),
                    Column("next runs"),
                ),
                [
                    (
                        r["queue"],
                        r["key"],
                        _cadence(r["every"], r["cron"], r["tz"]),
                        ", ".join(
                            time.strftime("%H:%M:%S", time.localtime(t)) for t in r["next_runs"]
                        ),
                    )
                    for r in rows
                ],
            )

    run(go, console)


@schedule_app.command("add")
def schedule_add(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    key: Annotated[str, typer.Argument(help="Schedule key (unique in the queue).")],
    every: Annotated[str | None, typer.Option(help="e.g. 30s, 10m.")] = None,
    cron: Annotated[str | None, typer.Option(help=CRON_HELP)] = None,
    tz: Annotated[str | None, typer.Option(help="Timezone of the cron pattern.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="JSON, @file or -.")] = None,
    name: Annotated[str | None, typer.Option(help="Job name (default: the key).")] = None,
    missed: Annotated[str, typer.Option(help="skip, once or all.")] = "skip",
    create: CreateOption = False,
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Create or update a repeatable job; prints its next three run times."""

    async def act(q: Queue) -> str:
        stored = await q.upsert_schedule(
            key,
            every=duration(every, "--every"),
            cron=cron,
            tz=tz,
            name=name,
            data=read_data(data),
            missed=missed,
        )
        runs = ", ".join(_clock(t) for t in next_runs(stored, 3))
        cadence = _cadence(stored.every, stored.cron, stored.tz)
        return f"schedule {key} of {q.name} ({cadence}): next runs {runs}"

    on_queue(queue, backend, act, app=app, mode="create", create=create)


@schedule_app.command("remove")
def schedule_remove(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    key: Annotated[str, typer.Argument(help="Schedule key.")],
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Remove a repeatable job."""

    async def act(q: Queue) -> str:
        if not await q.remove_schedule(key):
            raise JobNotFoundError(f"no schedule {key!r} in {q.name}")
        return f"removed schedule {key} of {q.name}"

    on_queue(queue, backend, act, app=app)


@schedule_app.command("run-now")
def schedule_run_now(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    key: Annotated[str, typer.Argument(help="Schedule key.")],
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Add one job of a schedule now (its regular slots are unchanged)."""

    async def act(q: Queue) -> str:
        found = {sched.key: sched for sched in await q.schedules()}
        if key not in found:
            raise JobNotFoundError(f"no schedule {key!r} in {q.name}")
        sched = found[key]
        opts = {k: v for k, v in sched.opts.items() if k not in ("job_id", "delay")}
        job = await q.add(sched.name, json.loads(sched.data_json), **opts)
        return f"added job {job.id} of schedule {key} to {q.name}"

    on_queue(queue, backend, act, app=app)
