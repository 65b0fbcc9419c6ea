"""``polyjobs enqueue QUEUE --data JSON``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from polyjobs.cli.common import (
    AppOption,
    BackendOption,
    CreateOption,
    JsonOption,
    Session,
    duration,
    find_spec,
    run,
    session,
)
from polyjobs.cli.console import Console
from polyjobs.errors import InvalidArgumentError, JobFailedError

if TYPE_CHECKING:
    from polyjobs.flow import JobNode


def read_data(data: str | None) -> Any:
    """``--data`` as JSON text, ``@file`` or ``-`` (stdin); None when not given."""
    if data is None:
        return None
    if data == "-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        path = Path(data[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read --data file {path}: {exc.strerror}") from None
    else:
        text = data
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"--data is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("--data is nested too deeply to be read") from None


def enqueue(
    queue: Annotated[str, typer.Argument(help="Queue, full or short name (e.g. analysis).")],
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="JSON, @file or - for stdin.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Job name (default: the queue's).")] = None,
    delay: Annotated[str | None, typer.Option(help="Run after this long (30s, 10m...).")] = None,
    priority: Annotated[int | None, typer.Option(help="0 first, then 1, 2, ...")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Custom id (dedupes).")] = None,
    attempts: Annotated[int | None, typer.Option(help="Attempts before failing.")] = None,
    group: Annotated[
        str | None, typer.Option(help="The job's group (fair turns, per-group limits).")
    ] = None,
    flow: Annotated[
        Path | None,
        typer.Option(help="Add the flow (a node or a list of nodes) in this JSON file instead."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
    timeout: Annotated[str, typer.Option(help="How long --wait waits.")] = "60s",
    create: CreateOption = False,
    backend: BackendOption = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add one job (or a flow with --flow); with --wait print its result (exit 1 when it
    fails)."""
    console = Console(json_mode=as_json)

    async def go() -> None:
        if flow is not None:
            given = {
                "--data": data,
                "--name": name,
                "--delay": delay,
                "--priority": priority,
                "--job-id": job_id,
                "--attempts": attempts,
                "--group": group,
                "--wait": wait or None,
            }
            ignored = [option for option, value in given.items() if value is not None]
            if ignored:
                raise InvalidArgumentError(
                    f"{', '.join(ignored)} cannot go with --flow: a flow's jobs take their "
                    "data and options from its file"
                )
            async with session(backend, mode="create", app=app) as s:
                top_queue = await s.known_queue(queue, create=create, offer_create=True)
                tops = await _add_flow(s, top_queue.name, flow)
                job = tops[0].job
                total = sum(_size(top, set()) for top in tops)
                _report(
                    console,
                    as_json,
                    {"queue": job.queue_name, "id": job.id, "state": job.state, "jobs": total},
                )
            return
        payload = read_data(data)
        options: dict[str, Any] = {}
        if delay is not None:
            options["delay"] = duration(delay, "--delay")
        for key, value in (
            ("priority", priority),
            ("job_id", job_id),
            ("attempts", attempts),
            ("group", group),
        ):
            if value is not None:
                options[key] = value
        wait_for = duration(timeout, "--timeout") or 0.0
        async with session(backend, mode="create", app=app) as s:
            q = await s.known_queue(queue, create=create, offer_create=True)
            job = await q.add(name or q.name, {} if payload is None else payload, **options)
            if not wait:
                _report(console, as_json, {"queue": q.name, "id": job.id, "state": job.state})
                return
            try:
                result = await job.wait(wait_for)
            except JobFailedError as exc:
                _report(
                    console,
                    as_json,
                    {"queue": q.name, "id": job.id, "state": "failed", "failed_reason": exc.reason},
                )
                raise typer.Exit(1) from None
            _report(
                console,
                as_json,
                {"queue": q.name, "id": job.id, "state": "completed", "result": result},
            )

    run(go, console)


async def _add_flow(s: Session, queue: str, path: Path) -> list[JobNode]:
    """The flow in ``path``: ``queue`` is the top nodes' queue when they name none; short queue
    names are resolved like the command's argument."""
    from polyjobs.flow import FlowProducer

    try:
        nodes = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read --flow file {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"--flow file {path} is not valid JSON: {exc}") from None
    nodes = nodes if isinstance(nodes, list) else [nodes]
    if not nodes:
        raise InvalidArgumentError(f"--flow file {path} holds no node")
    default = queue
    stack = [(node, default) for node in nodes]
    while stack:
        node, inherited = stack.pop()
        if not isinstance(node, dict):
            raise InvalidArgumentError(f"a flow node must be a JSON object, got {node!r}")
        named = node.get("queue")
        spec = find_spec(named, s.specs) if isinstance(named, str) else None
        node["queue"] = spec.name if spec is not None else named or inherited
        children = node.get("children")
        if isinstance(children, list):
            stack.extend((child, node["queue"]) for child in children)
    queues = [spec.make_queue(s.backend) for spec in s.specs.values()]
    return await FlowProducer(s.backend, queues=queues).add_bulk(nodes)


def _size(node: JobNode, seen: set[int]) -> int:
    """How many distinct jobs a flow holds (a shared child counts once)."""
    stack, count = [node], 0
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        count += 1
        stack.extend(current.children)
    return count


def _report(console: Console, as_json: bool, info: dict[str, Any]) -> None:
    if as_json:
        console.json(info)
    elif "result" in info:
        console.line(f"job {info['id']} of {info['queue']} completed: {json.dumps(info['result'])}")
    elif info["state"] == "failed":
        console.error(f"job {info['id']} of {info['queue']} failed: {info['failed_reason']}")
    elif "jobs" in info:
        console.line(
            f"added a flow of {info['jobs']} job(s): top job {info['id']} of {info['queue']} "
            f"({info['state']})"
        )
    else:
        console.line(f"added job {info['id']} to {info['queue']} ({info['state']})")
