"""polyjobs on its Redis backend (or any URL ``open_backend`` takes): asyncio, an async no-op
processor, default options except ``concurrency``. ``POLYJOBS_BENCH_UVLOOP=1`` runs on uvloop;
``POLYJOBS_BENCH_SRC=<dir>`` imports polyjobs from that source tree (``run.py --polyjobs-rev``)
instead of the installed (editable) one."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from _bench import REC, drive_async, job_data, parse_args

if os.environ.get("POLYJOBS_BENCH_SRC"):
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in type(f).__module__]
    sys.path.insert(0, os.environ["POLYJOBS_BENCH_SRC"])

from polyjobs import Queue, Worker, open_backend

QUEUE = "bench"


async def noop(job: Any) -> None:
    REC.hit(job.data)


async def main() -> None:
    args = parse_args()
    async with open_backend(args.url) as backend:
        queue = Queue(QUEUE, backend)

        async def add_one() -> None:
            await queue.add("noop", job_data())

        async def add_many(size: int) -> None:
            await queue.add_bulk([("noop", job_data()) for _ in range(size)])

        def start_worker(concurrency: int) -> Any:
            worker = Worker(QUEUE, noop, backend, concurrency=concurrency)
            return asyncio.ensure_future(worker.run())

        await drive_async(args, add_one, start_worker, add_many, "add_bulk")


if __name__ == "__main__":
    if os.environ.get("POLYJOBS_BENCH_UVLOOP") == "1":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
