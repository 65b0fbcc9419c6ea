"""Quick Redis-backend throughput check (not the benchmark harness; see benchmarks/README).

    .venv/bin/python benchmarks/redis_quick.py [--jobs 10000] [--concurrency 10] [--uvloop]
        [--limit 1000000/1s]

Prints enqueue rates (one by one, bulk), processing throughput of one worker with a no-op
processor, Redis commands per job and server time per script call (from INFO commandstats;
RESETs the server's stats). ``--limit`` sets a queue rate limit for the processing run (a
high one measures what the sliding window costs; without it, the hot path has no limit).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from polyjobs import Queue, Worker
from polyjobs.backends.redis import RedisBackend

QUEUE = "bench-quick"


def _calls(info: dict[str, Any]) -> int:
    return sum(int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_"))


def _script_us(info: dict[str, Any]) -> float:
    """Server time per script call (EVALSHA), in microseconds: what a script change costs,
    without the client's noise."""
    stat = info.get("cmdstat_evalsha")
    return float(stat["usec_per_call"]) if stat else 0.0


async def _noop(job: Any) -> None:
    return None


async def run(url: str, jobs: int, concurrency: int, limit: str | None) -> None:
    backend = RedisBackend(url)
    await backend.open()
    try:
        await backend.obliterate(QUEUE)
        queue = Queue(QUEUE, backend)
        redis = backend.redis
        n_single = min(jobs, 5000)
        start = time.perf_counter()
        for i in range(n_single):
            await queue.add("noop", {"i": i})
        single = n_single / (time.perf_counter() - start)
        await backend.obliterate(QUEUE)

        await redis.config_resetstat()
        start = time.perf_counter()
        for base in range(0, jobs, 1000):
            await queue.add_bulk([("noop", {"i": i}, {}) for i in range(base, base + 1000)])
        bulk = jobs / (time.perf_counter() - start)
        add_calls = _calls(await redis.info("commandstats"))

        if limit is not None:
            await queue.set_rate_limit(limit)
        await redis.config_resetstat()
        worker = Worker(QUEUE, _noop, backend, concurrency=concurrency, schedule=False)
        start = time.perf_counter()
        await worker.run(burst=True)
        elapsed = time.perf_counter() - start
        process_stats = await redis.info("commandstats")
        process_calls = _calls(process_stats)
        counts = await backend.counts(QUEUE)
        print(f"enqueue one by one: {single:,.0f} jobs/s")
        print(f"enqueue in bulk:    {bulk:,.0f} jobs/s ({add_calls / jobs:.1f} commands/job)")
        print(
            f"process c={concurrency}:     {jobs / elapsed:,.0f} jobs/s "
            f"({process_calls / jobs:.1f} commands/job, "
            f"{_script_us(process_stats):.1f} us/script call) counts={counts}"
        )
        await backend.obliterate(QUEUE)
        await _latency(backend, concurrency)
    finally:
        await backend.close()


async def _latency(
    backend: RedisBackend, concurrency: int, n: int = 400, rate: float = 200.0
) -> None:
    """Pick-up latency: from just before ``add`` to the processor starting, at ``rate`` jobs/s."""
    queue = Queue(QUEUE, backend)
    seen: list[float] = []
    done = asyncio.Event()

    async def record(job: Any) -> None:
        seen.append(time.time() - job.data["t"])
        if len(seen) >= n:
            done.set()

    worker = Worker(QUEUE, record, backend, concurrency=concurrency, schedule=False)
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)
    start = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        await queue.add("noop", {"t": time.time()})
    await asyncio.wait_for(done.wait(), 30)
    await worker.close(grace=1)
    await run
    seen.sort()
    p50, p99 = seen[len(seen) // 2] * 1000, seen[int(len(seen) * 0.99)] * 1000
    print(f"pick-up at {rate:.0f} jobs/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    await backend.obliterate(QUEUE)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0?prefix=bench")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--limit", default=None, help="a queue rate limit, e.g. 1000000/1s")
    args = parser.parse_args()
    coro = run(args.url, args.jobs, args.concurrency, args.limit)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
