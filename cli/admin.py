"""``polyjobs queue pause|resume|drain|clean|limit|global-concurrency|group-limit|obliterate``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from polyjobs.cli.common import AppOption, BackendOption, duration, on_queue
from polyjobs.errors import InvalidArgumentError

if TYPE_CHECKING:
    from polyjobs.queue import Queue

queue_app = typer.Typer(
    help="Pause, resume, drain, clean, limit or obliterate a queue.", no_args_is_help=True
)
QueueArg = Annotated[str, typer.Argument(help="Queue (full or short name).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Don't ask for confirmation.")]


@queue_app.command()
def pause(queue: QueueArg, backend: BackendOption = None, app: AppOption = None) -> None:
    """Stop workers from taking new jobs of this queue."""

    async def act(q: Queue) -> str:
        await q.pause()
        return f"paused {q.name}: workers finish their active jobs and take no new ones"

    on_queue(queue, backend, act, app=app)


@queue_app.command()
def resume(queue: QueueArg, backend: BackendOption = None, app: AppOption = None) -> None:
    """Let workers take jobs of this queue again."""

    async def act(q: Queue) -> str:
        await q.resume()
        return f"resumed {q.name}"

    on_queue(queue, backend, act, app=app)


@queue_app.command()
def drain(
    queue: QueueArg,
    delayed: Annotated[bool, typer.Option(help="Also remove delayed jobs.")] = False,
    yes: YesOption = False,
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Remove every waiting job (and delayed ones with --delayed)."""

    async def act(q: Queue) -> str:
        return f"drained {q.name}: removed {await q.drain(delayed=delayed)} job(s)"

    on_queue(
        queue,
        backend,
        act,
        app=app,
        confirm=None if yes else "Remove every waiting job of {queue}?",
    )


@queue_app.command()
def clean(
    queue: QueueArg,
    state: Annotated[str, typer.Option(help="completed, failed, waiting, delayed.")] = "completed",
    grace: Annotated[str, typer.Option(help="Only jobs older than this (0s, 10m, 1d).")] = "0s",
    limit: Annotated[int, typer.Option(help="At most this many (0: all).", min=0)] = 0,
    yes: YesOption = False,
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Remove jobs in one state older than --grace."""
    from polyjobs.queue import check_state

    async def act(q: Queue) -> str:
        checked = check_state(state)
        removed = await q.clean(checked, duration(grace, "--grace") or 0.0, limit)
        return f"cleaned {q.name}: removed {len(removed)} {checked} job(s)"

    question = f"Remove {state} jobs of {{queue}} older than {grace}?"
    on_queue(queue, backend, act, app=app, confirm=None if yes else question)


@queue_app.command()
def limit(
    queue: QueueArg,
    spec: Annotated[str, typer.Argument(help="MAX/DURATION such as 5/2s or 30/1m, or off.")],
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Limit job starts of a queue across every worker (until the next `polyjobs start`
    applies the configured limit)."""

    async def act(q: Queue) -> str:
        await q.set_rate_limit(None if spec.lower() in ("off", "none") else spec)
        return f"rate limit of {q.name}: {await q.rate_limit() or 'none'}"

    on_queue(queue, backend, act, app=app)


def _cap(spec: str, what: str) -> int | None:
    """A concurrency cap given on the command line: a positive integer, or off (None)."""
    from polyjobs.queue import check_global_concurrency

    if spec.lower() in ("off", "none"):
        return None
    try:
        n = int(spec)
    except ValueError:
        raise InvalidArgumentError(f"{what} must be an integer or off, got {spec!r}") from None
    return check_global_concurrency(n, what)


@queue_app.command("global-concurrency")
def global_concurrency(
    queue: QueueArg,
    spec: Annotated[str, typer.Argument(help="At most N jobs running at once, or off.")],
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Cap how many jobs of a queue run at once across every worker and machine (until the
    next `polyjobs start` applies the configured cap)."""

    async def act(q: Queue) -> str:
        await q.set_global_concurrency(_cap(spec, "global concurrency"))
        return f"global concurrency of {q.name}: {await q.global_concurrency() or 'none'}"

    on_queue(queue, backend, act, app=app)


@queue_app.command("group-limit")
def group_limit(
    queue: QueueArg,
    concurrency: Annotated[
        str | None,
        typer.Option(help="At most N jobs of each group running at once, or off."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(help="At most MAX starts of each group per DURATION (5/2s), or off."),
    ] = None,
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Cap each group of a queue's jobs across every worker and machine (until the next
    `polyjobs start` applies the configured limits); with no option, show them."""

    async def act(q: Queue) -> str:
        from polyjobs.options import RateLimit

        # both checked before either is set: a refused option changes nothing
        cap = None if concurrency is None else _cap(concurrency, "group concurrency")
        limit: RateLimit | None = None
        if rate is not None and rate.lower() not in ("off", "none"):
            limit = RateLimit.parse(rate)
        if concurrency is not None:
            await q.set_group_concurrency(cap)
        if rate is not None:
            await q.set_group_rate_limit(limit)
        return (
            f"group limits of {q.name}: concurrency {await q.group_concurrency() or 'none'}, "
            f"rate {await q.group_rate_limit() or 'none'}"
        )

    on_queue(queue, backend, act, app=app)


@queue_app.command()
def obliterate(
    queue: QueueArg,
    yes: YesOption = False,
    backend: BackendOption = None,
    app: AppOption = None,
) -> None:
    """Remove the queue and everything in it: jobs, logs, schedules."""

    async def act(q: Queue) -> str:
        await q.obliterate()
        return f"obliterated {q.name}"

    on_queue(
        queue,
        backend,
        act,
        app=app,
        confirm=None if yes else "Obliterate {queue} and every job in it?",
    )
