"""SAQ: asyncio Worker (``concurrency``), JSON (its default serializer), async no-op."""

from __future__ import annotations

import asyncio
from typing import Any

from _bench import REC, drive_async, job_data, parse_args
from saq import Queue, Worker


async def noop(ctx: Any, *, t: float) -> None:
    REC.hit({"t": t})


async def main() -> None:
    args = parse_args()
    queue = Queue.from_url(args.url, name="bench")
    await queue.connect()

    async def add_one() -> None:
        await queue.enqueue("noop", **job_data())

    def start_worker(concurrency: int) -> Any:
        worker = Worker(queue, functions=[noop], concurrency=concurrency)
        return asyncio.ensure_future(worker.start())

    await drive_async(args, add_one, start_worker)


if __name__ == "__main__":
    asyncio.run(main())
