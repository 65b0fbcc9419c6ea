"""Queues for the CLI scenarios (loaded with ``POLYJOBS_PLUGINS=chaos_plugin``).

``chaos-sleep`` sleeps ``data["seconds"]``; ``chaos-tick`` runs every second and records each
run in Redis (``HINCRBY $CHAOS_RECORD_KEY <job id> 1`` on ``$CHAOS_RECORD_URL``);
``chaos-leak`` fails with a message holding ``data["secret"]``, and logs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

import redis.asyncio as aioredis

from polyjobs import Job, QueueSpec, ScheduleSpec, hookimpl

log = logging.getLogger("polyjobs.chaos_plugin")


async def sleep(job: Job) -> float:
    seconds = float(job.data.get("seconds", 1.0))
    await asyncio.sleep(seconds)
    return seconds


async def tick(job: Job) -> str:
    client = aioredis.Redis.from_url(os.environ["CHAOS_RECORD_URL"])
    try:
        await client.hincrby(os.environ["CHAOS_RECORD_KEY"], job.id, 1)
    finally:
        await client.aclose()
    return job.id


async def leak(job: Job) -> None:
    secret = str(job.data.get("secret"))
    log.warning("about to fail with %s", secret)
    raise RuntimeError(f"could not reach {secret}")


SLEEP = QueueSpec("chaos-sleep", sleep, concurrency=100, short_name="sleep")
TICK = QueueSpec("chaos-tick", tick, short_name="tick", schedule=ScheduleSpec("tick", every=1.0))
LEAK = QueueSpec("chaos-leak", leak, short_name="leak")


@hookimpl
def polyjobs_queue_specs() -> Sequence[QueueSpec]:
    return [SLEEP, TICK, LEAK]
