"""arq: asyncio Worker (``max_jobs`` = concurrency), JSON job serializer instead of its default
pickle, ``poll_delay`` 0.01 s instead of 0.5 s (arq polls; 0.5 s would dominate pick-up latency)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from _bench import REC, drive_async, job_data, parse_args, redis_db
from arq import Worker, create_pool
from arq.connections import RedisSettings

QUEUE = "bench"


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


async def noop(ctx: Any, data: dict[str, float]) -> None:
    REC.hit(data)


async def main() -> None:
    args = parse_args()
    host, port, db = redis_db(args.url)
    settings = RedisSettings(host=host, port=port, database=db)
    pool = await create_pool(
        settings, job_serializer=dumps, job_deserializer=json.loads, default_queue_name=QUEUE
    )

    async def add_one() -> None:
        await pool.enqueue_job("noop", job_data())

    def start_worker(concurrency: int) -> Any:
        worker = Worker(
            functions=[noop],
            redis_settings=settings,
            queue_name=QUEUE,
            max_jobs=concurrency,
            poll_delay=0.01,
            handle_signals=False,
            job_serializer=dumps,
            job_deserializer=json.loads,
        )
        return asyncio.ensure_future(worker.async_run())

    await drive_async(args, add_one, start_worker)


if __name__ == "__main__":
    asyncio.run(main())
