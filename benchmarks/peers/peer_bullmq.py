"""``bullmq`` (the official Python port): asyncio Worker, async no-op processor, default job
options (JSON data, completed jobs kept, like BullMQ's defaults)."""

from __future__ import annotations

import asyncio
from typing import Any

from _bench import REC, drive_async, job_data, parse_args
from bullmq import Queue, Worker

QUEUE = "bench"


async def noop(job: Any, token: Any) -> None:
    REC.hit(job.data)


async def main() -> None:
    args = parse_args()
    queue = Queue(QUEUE, {"connection": args.url})

    async def add_one() -> None:
        await queue.add("noop", job_data())

    async def add_many(size: int) -> None:
        await queue.addBulk([{"name": "noop", "data": job_data()} for _ in range(size)])

    def start_worker(concurrency: int) -> Any:
        Worker(QUEUE, noop, {"connection": args.url, "concurrency": concurrency})
        return None  # the Worker runs itself (autorun)

    await drive_async(args, add_one, start_worker, add_many, "addBulk")


if __name__ == "__main__":
    asyncio.run(main())
