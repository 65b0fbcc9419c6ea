"""``polyjobs schedule list|add|remove|run-now``."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from polyjobs.cli.common import BackendOption, JsonOption, on_queue, run, session
from polyjobs.cli.console import Console
from polyjobs.cli.enqueue import read_data
from polyjobs.errors import JobNotFoundError
from polyjobs.options import seconds
from polyjobs.queue import Queue
from polyjobs.scheduling import Cadence

schedule_app = typer.Typer(
    help="Repeatable jobs: list, add, remove, run now.", no_args_is_help=True
)


@schedule_app.command("list")
def schedule_list(
    queue: Annotated[str | None, typer.Argument(help="Only this queue.")] = None,
    upcoming: Annotated[int, typer.Option(help="Next run times to show.", min=1)] = 3,
    backend: BackendOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every schedule with its cadence and next run times."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        async with session(backend) as s:
            names = [queue] if queue else sorted(set(s.specs) | set(await s.backend.queues()))
            rows: list[dict[str, Any]] = []
            for name in names:
                q = s.queue(name)
                for sched in await q.schedules():
                    cadence = Cadence(sched.every, sched.cron, sched.tz)
                    runs, t = [sched.next_run], sched.next_run
                    for _ in range(upcoming - 1):
                        t = cadence.next_after(t)
                        runs.append(t)
                    rows.append(
                        {
                            "queue": q.name,
                            "key": sched.key,
                            "name": sched.name,
                            "every": sched.every,
                            "cron": sched.cron,
                            "tz": sched.tz,
                            "missed": sched.missed,
                            "next_runs": runs,
                        }
                    )
            if as_json:
                console.json(rows)
                return
            console.table(
                ("queue", "key", "cadence", "next runs"),
                [
                    (
                        r["queue"],
                        r["key"],
                        f"every {r['every']:g}s"
                        if r["every"]
                        else f"{r['cron']} {r['tz'] or 'UTC'}",
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
    cron: Annotated[str | None, typer.Option(help="e.g. '0 * * * *'.")] = None,
    tz: Annotated[str | None, typer.Option(help="Timezone of the cron pattern.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="JSON, @file or -.")] = None,
    name: Annotated[str | None, typer.Option(help="Job name (default: the key).")] = None,
    missed: Annotated[str, typer.Option(help="skip, once or all.")] = "skip",
    backend: BackendOption = None,
) -> None:
    """Create or update a repeatable job."""

    async def act(q: Queue) -> str:
        stored = await q.upsert_schedule(
            key,
            every=None if every is None else seconds(every, "--every"),
            cron=cron,
            tz=tz,
            name=name,
            data=read_data(data),
            missed=missed,
        )
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stored.next_run))
        return f"schedule {key} of {q.name}: next run {when}"

    on_queue(queue, backend, act)


@schedule_app.command("remove")
def schedule_remove(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    key: Annotated[str, typer.Argument(help="Schedule key.")],
    backend: BackendOption = None,
) -> None:
    """Remove a repeatable job."""

    async def act(q: Queue) -> str:
        if not await q.remove_schedule(key):
            raise JobNotFoundError(f"no schedule {key!r} in {q.name}")
        return f"removed schedule {key} of {q.name}"

    on_queue(queue, backend, act)


@schedule_app.command("run-now")
def schedule_run_now(
    queue: Annotated[str, typer.Argument(help="Queue (full or short name).")],
    key: Annotated[str, typer.Argument(help="Schedule key.")],
    backend: BackendOption = None,
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

    on_queue(queue, backend, act)
