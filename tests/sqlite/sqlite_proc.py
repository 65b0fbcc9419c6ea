"""Child processes for the multi-process SQLite tests (run as a script, never imported).

    python sqlite_proc.py produce URL QUEUE FIRST COUNT BULK
    python sqlite_proc.py work URL QUEUE RECORD_FILE CONCURRENCY LEASE [SLOW_JOB_NAME]
    python sqlite_proc.py add-and-wait URL QUEUE
    python sqlite_proc.py open URL

``work`` appends the ``n`` of every job it completes to RECORD_FILE (one line each, flushed),
prints ``started <id>`` when it begins a job named SLOW_JOB_NAME (which then hangs), and stops
on SIGTERM. ``open`` prints ``OK`` or the error line, for the bad-file tests.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from polyjobs import Job, PolyjobsError, Queue, Worker, open_backend


async def produce(url: str, queue: str, first: int, count: int, bulk: int) -> None:
    async with open_backend(url) as backend:
        q = Queue(queue, backend, default_options={"remove_on_complete": False})
        n = first
        while n < first + count:
            size = min(bulk, first + count - n)
            if size == 1:
                await q.add("job", {"n": n})
            else:
                await q.add_bulk([("job", {"n": i}) for i in range(n, n + size)])
            n += size


async def work(
    url: str, queue: str, record: str, concurrency: int, lease: float, slow: str
) -> None:
    async with open_backend(url) as backend:
        with open(record, "a", encoding="utf-8") as out:

            async def process(job: Job) -> Any:
                if job.name == slow:
                    print(f"started {job.id}", flush=True)
                    await asyncio.sleep(3600)
                out.write(f"{job.data['n']}\n")
                out.flush()
                return job.data["n"]

            worker = Worker(
                queue,
                process,
                backend,
                concurrency=concurrency,
                lease=lease,
                stalled_interval=0.2,
                schedule=False,
            )
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, worker.request_close, 5.0)
            print("ready", flush=True)
            await worker.run()


async def add_and_wait(url: str, queue: str) -> None:
    async with open_backend(url) as backend:
        job = await Queue(queue, backend).add("durable", {"n": 1}, job_id="keep-me")
        print(f"added {job.id}", flush=True)
        await asyncio.sleep(3600)  # killed here, with the backend still open


async def open_only(url: str) -> None:
    try:
        async with open_backend(url) as backend:
            await backend.counts("probe")
    except PolyjobsError as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return
    print("OK", flush=True)


def main(argv: list[str]) -> None:
    command, url = argv[0], argv[1]
    if command == "produce":
        asyncio.run(produce(url, argv[2], int(argv[3]), int(argv[4]), int(argv[5])))
    elif command == "work":
        slow = argv[6] if len(argv) > 6 else "-"
        asyncio.run(work(url, argv[2], argv[3], int(argv[4]), float(argv[5]), slow))
    elif command == "add-and-wait":
        asyncio.run(add_and_wait(url, argv[2]))
    elif command == "open":
        asyncio.run(open_only(url))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
