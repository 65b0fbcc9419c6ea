"""A worker process for the flow crash test: ``python flow_worker.py BACKEND_URL RUNS_FILE``.

Runs the two queues of the flow: ``fk-leaf`` jobs sleep ``data["sleep"]`` and return
``data["n"]``; ``fk-top`` jobs return the sum of their children's values. Each finished run
appends ``<queue>:<id>`` to RUNS_FILE. Short leases make recovery after a SIGKILL quick.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from polyjobs import Job, Worker, WorkerOptions, open_backend

OPTIONS = WorkerOptions(
    concurrency=10,
    lease=1.0,
    stalled_interval=0.3,
    max_stalls=1000,
    block=0.5,
    heartbeat_interval=1.0,
    schedule=False,
)


async def main(url: str, runs_file: str) -> None:
    runs = open(runs_file, "a", buffering=1)

    async def leaf(job: Job) -> Any:
        await asyncio.sleep(float(job.data["sleep"]))
        runs.write(f"{job.queue_name}:{job.id}\n")
        return job.data["n"]

    async def top(job: Job) -> Any:
        total = sum((await job.children_values()).values())
        runs.write(f"{job.queue_name}:{job.id}\n")
        return total

    async with open_backend(url) as backend:
        workers = [
            Worker("fk-leaf", leaf, backend, options=OPTIONS),
            Worker("fk-top", top, backend, options=OPTIONS),
        ]
        print("ready", flush=True)
        await asyncio.gather(*(w.run() for w in workers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
