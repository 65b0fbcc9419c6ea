"""A plugin for the CLI tests (loaded with POLYJOBS_PLUGINS=polyjobs_test_plugin)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from polyjobs import InvalidArgumentError, Job, QueueSpec, hookimpl


def require_text(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise InvalidArgumentError('test-echo needs {"text": "..."}: "text" is missing')


async def echo(job: Job) -> str:
    return str(job.data["text"]).upper()


async def slow(job: Job) -> float:
    seconds = float(job.data.get("seconds", 1.0))
    for step in range(4):
        await job.update_progress(step * 25)
        await asyncio.sleep(seconds / 4)
    return seconds


async def fail(job: Job) -> None:
    raise RuntimeError("boom from the test plugin")


async def noisy(job: Job) -> None:
    logging.getLogger("polyjobs.test").warning("noisy job %s [bold]logs[/bold]", job.id)
    raise RuntimeError(
        "ConnectError: request to data-api.polymarket.com failed: [Errno 111] connection "
        "refused " + "with a long tail of words " * 10
    )


ECHO = QueueSpec("test-echo", echo, concurrency=2, short_name="echo", validate=require_text)
SLOW = QueueSpec("test-slow", slow, concurrency=20, short_name="slow")
FAIL = QueueSpec("test-fail", fail, short_name="fail")
NOISY = QueueSpec("test-noisy", noisy, short_name="noisy")


@hookimpl
def polyjobs_queue_specs() -> Sequence[QueueSpec]:
    return [ECHO, SLOW, FAIL, NOISY]
