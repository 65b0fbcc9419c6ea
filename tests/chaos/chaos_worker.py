"""A worker process for the crash scenario: ``python chaos_worker.py BACKEND_URL QUEUE RECORD_URL
RECORD_KEY``.

Each job sleeps ``data["sleep"]`` seconds, records its id in Redis (``HINCRBY RECORD_KEY id 1``)
half-way through, and completes. Short leases make recovery after a SIGKILL quick. Prints
``ready <worker id>`` once running; SIGTERM closes it gracefully.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import redis.asyncio as aioredis

from polyjobs import Job, Worker, WorkerOptions, open_backend

OPTIONS = WorkerOptions(
    concurrency=10,
    lease=2.0,
    stalled_interval=0.5,
    max_stalls=1000,
    block=1.0,
    heartbeat_interval=1.0,
    schedule=False,
)


async def main(url: str, queue: str, record_url: str, record_key: str) -> None:
    recorder = aioredis.Redis.from_url(record_url)

    async def process(job: Job) -> str:
        half = float(job.data["sleep"]) / 2
        await asyncio.sleep(half)
        await recorder.hincrby(record_key, job.id, 1)
        await asyncio.sleep(half)
        return job.id

    async with open_backend(url) as backend:
        worker = Worker(queue, process, backend, options=OPTIONS)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, worker.request_close, 5.0)
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(0)
        print(f"ready {worker.id}", flush=True)
        await run
    await recorder.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
