"""A worker process for the group fault test: ``python grouped_worker.py BACKEND_URL QUEUE``.

Its jobs never end by themselves (each sleeps for a minute), so it holds a group's slot until
it is killed. It prints ``started <job id>`` as each job starts.
"""

from __future__ import annotations

import asyncio
import sys

from polyjobs import Job, Worker, WorkerOptions, open_backend

OPTIONS = WorkerOptions(
    concurrency=4,
    lease=1.0,
    stalled_interval=0.3,
    block=0.5,
    heartbeat_interval=1.0,
    schedule=False,
)


async def main(url: str, queue: str) -> None:
    async def hold(job: Job) -> None:
        print(f"started {job.id}", flush=True)
        await asyncio.sleep(60)

    async with open_backend(url) as backend:
        await Worker(queue, hold, backend, options=OPTIONS).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
