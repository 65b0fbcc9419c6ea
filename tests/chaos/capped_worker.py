"""A worker process for the global-concurrency fault test: ``python capped_worker.py
BACKEND_URL QUEUE RECORD_URL RECORD_KEY``.

Each job adds 1 to this process's field of the Redis hash RECORD_KEY while its processor runs
(``HINCRBY RECORD_KEY <pid> ±1``), so the test can count the jobs really running in the live
processes. Each worker may run 4 jobs at once; the queue's global cap is lower.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import redis.asyncio as aioredis

from polyjobs import Job, Worker, WorkerOptions, open_backend

OPTIONS = WorkerOptions(
    concurrency=4,
    lease=1.0,
    stalled_interval=0.3,
    max_stalls=1000,
    block=0.5,
    heartbeat_interval=1.0,
    schedule=False,
)


async def main(url: str, queue: str, record_url: str, record_key: str) -> None:
    recorder = aioredis.Redis.from_url(record_url)
    me = str(os.getpid())

    async def process(job: Job) -> int:
        await recorder.hincrby(record_key, me, 1)
        try:
            await asyncio.sleep(0.03)
        finally:
            await recorder.hincrby(record_key, me, -1)
        return int(job.data)

    async with open_backend(url) as backend:
        worker = Worker(queue, process, backend, options=OPTIONS)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.request_close, 2.0)
        await worker.run()
    await recorder.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
