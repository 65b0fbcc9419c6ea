"""An example polyjobs plugin: the queue ``example-echo``, the backend scheme ``echo-memory``
and the command ``polyjobs shout``.

Installed, it is found through the ``polyjobs`` entry-point group; nothing else is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from polyjobs import Job, QueueSpec, hookimpl
from polyjobs.backends.memory import MemoryBackend
from polyjobs.hookspecs import BackendFactory


async def echo(job: Job) -> Any:
    """Return the job's data, upper-cased when it is a string."""
    data = job.data
    return data.upper() if isinstance(data, str) else data


ECHO = QueueSpec("example-echo", echo, concurrency=2, short_name="echo")


class EchoMemoryBackend(MemoryBackend):
    """The in-memory backend under another scheme, to show how a backend plugs in."""


@hookimpl
def polyjobs_queue_specs() -> Sequence[QueueSpec]:
    return [ECHO]


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"echo-memory": EchoMemoryBackend}


@hookimpl
def polyjobs_cli_commands() -> Mapping[str, str]:
    return {"shout": "polyjobs_example_plugin.commands:shout"}
