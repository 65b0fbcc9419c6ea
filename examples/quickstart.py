"""The engine in a plain script: 1,000 jobs, one worker at concurrency 10, burst mode.

python examples/quickstart.py [backend-url]      # default memory://
"""

from __future__ import annotations

import asyncio
import sys
import time

from polyjobs import Job, Queue, Worker, open_backend

N = 1000


async def square(job: Job) -> int:
    await asyncio.sleep(0)  # a real processor would await I/O here
    return int(job.data["n"]) ** 2


async def main(url: str) -> None:
    async with open_backend(url) as backend:
        queue = Queue("quickstart", backend, default_options={"remove_on_complete": False})
        await queue.obliterate()  # start from an empty queue on a shared backend
        started = time.perf_counter()
        await queue.add_bulk([("square", {"n": n}) for n in range(N)])
        peak = running = 0

        async def tracked(job: Job) -> int:
            nonlocal peak, running
            running += 1
            peak = max(peak, running)
            try:
                return await square(job)
            finally:
                running -= 1

        await Worker("quickstart", tracked, backend, concurrency=10).run(burst=True)
        elapsed = time.perf_counter() - started
        counts = await queue.counts()
        results = sum(job.returnvalue for job in await queue.jobs("completed"))
        print(f"{url}: {counts} in {elapsed:.2f}s, peak concurrency {peak}")
        assert counts["completed"] == N and counts["waiting"] == counts["active"] == 0
        assert results == sum(n * n for n in range(N)) and peak <= 10
        await queue.obliterate()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory://"))
