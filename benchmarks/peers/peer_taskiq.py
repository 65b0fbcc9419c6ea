"""taskiq with taskiq-redis ``ListQueueBroker`` (BRPOP on a list), one in-process receiver
(``max_async_tasks`` = concurrency), JSON (taskiq's default), no result backend."""

from __future__ import annotations

import asyncio
from typing import Any

from _bench import REC, drive_async, job_data, parse_args
from taskiq.api import run_receiver_task
from taskiq_redis import ListQueueBroker


def build(url: str) -> tuple[Any, Any]:
    broker = ListQueueBroker(url, queue_name="bench")

    @broker.task(task_name="noop")
    async def noop(data: dict[str, float]) -> None:
        REC.hit(data)

    return broker, noop


async def main() -> None:
    args = parse_args()
    broker, noop = build(args.url)
    await broker.startup()

    async def add_one() -> None:
        await noop.kiq(job_data())

    def start_worker(concurrency: int) -> Any:
        return asyncio.ensure_future(
            run_receiver_task(broker, max_async_tasks=concurrency, run_startup=False)
        )

    await drive_async(args, add_one, start_worker)


if __name__ == "__main__":
    asyncio.run(main())
