"""``polyjobs queue pause|resume|drain|clean|limit|obliterate``."""

from __future__ import annotations

from typing import Annotated

import typer

from polyjobs.cli.common import BackendOption, on_queue
from polyjobs.cli.console import Console
from polyjobs.options import seconds
from polyjobs.queue import Queue, check_state

queue_app = typer.Typer(
    help="Pause, resume, drain, clean, limit or obliterate a queue.", no_args_is_help=True
)
QueueArg = Annotated[str, typer.Argument(help="Queue (full or short name).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Don't ask for confirmation.")]


def _confirm(yes: bool, question: str) -> None:
    if not yes and not typer.confirm(question, default=False):
        Console().error("aborted; nothing was changed")
        raise typer.Exit(1)


@queue_app.command()
def pause(queue: QueueArg, backend: BackendOption = None) -> None:
    """Stop workers from taking new jobs of this queue."""

    async def act(q: Queue) -> str:
        await q.pause()
        return f"paused {q.name}: workers finish their active jobs and take no new ones"

    on_queue(queue, backend, act)


@queue_app.command()
def resume(queue: QueueArg, backend: BackendOption = None) -> None:
    """Let workers take jobs of this queue again."""

    async def act(q: Queue) -> str:
        await q.resume()
        return f"resumed {q.name}"

    on_queue(queue, backend, act)


@queue_app.command()
def drain(
    queue: QueueArg,
    delayed: Annotated[bool, typer.Option(help="Also remove delayed jobs.")] = False,
    yes: YesOption = False,
    backend: BackendOption = None,
) -> None:
    """Remove every waiting job (and delayed ones with --delayed)."""
    _confirm(yes, f"Remove every waiting job of {queue}?")

    async def act(q: Queue) -> str:
        return f"drained {q.name}: removed {await q.drain(delayed=delayed)} job(s)"

    on_queue(queue, backend, act)


@queue_app.command()
def clean(
    queue: QueueArg,
    state: Annotated[str, typer.Option(help="completed, failed, waiting, delayed.")] = "completed",
    grace: Annotated[str, typer.Option(help="Only jobs older than this.")] = "0s",
    limit: Annotated[int, typer.Option(help="At most this many (0: all).", min=0)] = 0,
    yes: YesOption = False,
    backend: BackendOption = None,
) -> None:
    """Remove jobs in one state older than --grace."""
    _confirm(yes, f"Remove {state} jobs of {queue} older than {grace}?")

    async def act(q: Queue) -> str:
        checked = check_state(state)
        removed = await q.clean(checked, seconds(grace, "--grace"), limit)
        return f"cleaned {q.name}: removed {len(removed)} {checked} job(s)"

    on_queue(queue, backend, act)


@queue_app.command()
def limit(
    queue: QueueArg,
    spec: Annotated[str, typer.Argument(help="MAX/DURATION such as 5/2s or 30/1m, or off.")],
    backend: BackendOption = None,
) -> None:
    """Limit job starts of a queue across every worker (until the next `polyjobs start`
    applies the configured limit)."""

    async def act(q: Queue) -> str:
        await q.set_rate_limit(None if spec.lower() in ("off", "none") else spec)
        return f"rate limit of {q.name}: {await q.rate_limit() or 'none'}"

    on_queue(queue, backend, act)


@queue_app.command()
def obliterate(queue: QueueArg, yes: YesOption = False, backend: BackendOption = None) -> None:
    """Remove the queue and everything in it: jobs, logs, schedules."""
    _confirm(yes, f"Obliterate {queue} and every job in it?")

    async def act(q: Queue) -> str:
        await q.obliterate()
        return f"obliterated {q.name}"

    on_queue(queue, backend, act)
