"""A worker process for the PostgreSQL fault tests (run as a script, never imported).

    python pg_proc.py URL QUEUE LEASE

Runs a worker (concurrency 4) whose jobs named ``hang`` print ``started <id>`` and then hang,
and whose other jobs complete at once; prints ``ready`` once it runs. The test SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from polyjobs import Job, Worker, open_backend


async def work(url: str, queue: str, lease: float) -> None:
    async with open_backend(url) as backend:

        async def process(job: Job) -> Any:
            if job.name == "hang":
                print(f"started {job.id}", flush=True)
                await asyncio.sleep(3600)
            return job.data

        worker = Worker(
            queue,
            process,
            backend,
            concurrency=4,
            lease=lease,
            stalled_interval=0.2,
            block=0.5,
            schedule=False,
        )
        print("ready", flush=True)
        await worker.run()


if __name__ == "__main__":
    asyncio.run(work(sys.argv[1], sys.argv[2], float(sys.argv[3])))
