"""Quick figures for the SQLite backend: enqueue and processing throughput, pick-up latency.

    .venv/bin/python benchmarks/sqlite_quick.py [--jobs 10000] [--synchronous normal|full]

Pick-up latency is ``processed_on - timestamp`` of a job added while a worker sat idle in a
blocking fetch: in the same process (woken at once) and in another process (which notices the
commit by polling ``PRAGMA data_version``, backing off to 100 ms while idle).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from polyjobs import Job, Queue, Worker, open_backend

Q = "bench"


async def _noop(job: Job) -> Any:
    return None


async def enqueue_single(url: str, n: int) -> tuple[float, float]:
    """Jobs per second, and CPU seconds per job of this process (its database thread too)."""
    async with open_backend(url) as backend:
        queue = Queue(Q, backend)
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            await queue.add("job", {"i": i})
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        await backend.obliterate(Q)
    return n / elapsed, cpu / n


async def enqueue_bulk(url: str, n: int, size: int = 1000) -> float:
    async with open_backend(url) as backend:
        queue = Queue(Q, backend)
        start = time.perf_counter()
        for first in range(0, n, size):
            await queue.add_bulk([("job", {"i": i}) for i in range(first, min(first + size, n))])
        elapsed = time.perf_counter() - start
    return n / elapsed


async def process(url: str, n: int, concurrency: int) -> tuple[float, float]:
    """Jobs per second for a worker draining ``n`` queued jobs (left by ``enqueue_bulk``), and
    CPU seconds per job."""
    async with open_backend(url) as backend:
        counts = await backend.counts(Q)
        assert counts["waiting"] >= n, counts
        worker = Worker(Q, _noop, backend, concurrency=concurrency, schedule=False)
        start, cpu = time.perf_counter(), time.process_time()
        await worker.run(burst=True)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        done = (await backend.counts(Q))["waiting"]
        assert done == 0, done
        await backend.obliterate(Q)
    return counts["waiting"] / elapsed, cpu / counts["waiting"]


async def _add_spaced(url: str, samples: int) -> list[float]:
    """Add jobs one at a time with idle gaps; return each job's pick-up latency."""
    async with open_backend(url) as backend:
        queue = Queue(Q, backend, default_options={"remove_on_complete": False})
        ids = []
        for _ in range(samples):
            await asyncio.sleep(random.uniform(0.15, 0.3))  # let the worker go idle
            ids.append((await queue.add("ping")).id)
        deadline = time.monotonic() + 10
        latencies: list[float] = []
        while time.monotonic() < deadline:
            records = [await backend.get_job(Q, i) for i in ids]
            if all(r is not None and r.processed_on is not None for r in records):
                latencies = [r.processed_on - r.timestamp for r in records if r and r.processed_on]
                break
            await asyncio.sleep(0.05)
        await backend.obliterate(Q)
    return latencies


async def latency_same_process(url: str, samples: int) -> list[float]:
    async with open_backend(url) as backend:
        worker = Worker(Q, _noop, backend, concurrency=1, schedule=False)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.2)
        try:
            return await _add_spaced(url, samples)
        finally:
            await worker.close()
            await task


async def _child_worker(url: str) -> None:
    async with open_backend(url) as backend:
        worker = Worker(Q, _noop, backend, concurrency=1, schedule=False)
        task = asyncio.create_task(worker.run())
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
        await worker.close()
        await task


async def latency_other_process(url: str, samples: int) -> list[float]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--child-worker", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        await asyncio.sleep(0.3)
        return await _add_spaced(url, samples)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return (
        f"median {statistics.median(values) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms   "
        f"max {values[-1] * 1000:6.1f} ms"
    )


async def main(jobs: int, synchronous: str, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}?synchronous={synchronous}"
        print(f"SQLite backend, synchronous={synchronous}, {jobs} jobs")
        single, cpu = await enqueue_single(url, min(jobs, 2000))
        print(f"enqueue, one add per job      {single:10,.0f} jobs/s   {cpu * 1e6:5.0f} us CPU/job")
        bulk = await enqueue_bulk(url, jobs)
        print(f"enqueue, add_bulk of 1000     {bulk:10,.0f} jobs/s")
        rate, cpu = await process(url, jobs, concurrency=10)
        print(f"process, concurrency 10       {rate:10,.0f} jobs/s   {cpu * 1e6:5.0f} us CPU/job")
        print(f"pick-up, same process         {_ms(await latency_same_process(url, samples))}")
        print(f"pick-up, other process        {_ms(await latency_other_process(url, samples))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--synchronous", default="normal", choices=["normal", "full"])
    parser.add_argument("--child-worker", metavar="URL")
    args = parser.parse_args()
    if args.child_worker:
        asyncio.run(_child_worker(args.child_worker))
    else:
        asyncio.run(main(args.jobs, args.synchronous, args.samples))
