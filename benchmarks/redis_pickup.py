"""Pick-up of an idle Redis worker, the two ways side by side (not the benchmark harness; see
benchmarks/README, "Pick-up in one round trip").

    .venv/bin/python benchmarks/redis_pickup.py [--url redis://127.0.0.1:6379/9] [--jobs 600]
        [--uvloop]

A fetch blocks on an empty queue; a producer (its own backend, same process) adds one job;
the time from before the add to the fetch returning it is one sample. Alternating blocks of 50:
``one trip`` (the wait and the fetch sent together, what the backend does over a multiplexed
connection) and ``two trips`` (the wait, then the fetch once it returned: the way before).
Each job is completed before the next sample. Uses its own key prefix and removes its queue.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from polyjobs import Queue
from polyjobs.backend import Finish, JobRecord
from polyjobs.backends.redis import RedisBackend

QUEUE = "bench-pickup"
BLOCK = 50


async def _two_trips(
    self: RedisBackend, queue: str, token: str, limit: int, lease: float, marker: str, wait: float
) -> tuple[list[JobRecord], float | None]:
    blocking: Any = self._blocking
    with self._errors:
        await blocking.call(marker, wait, "BZPOPMIN", marker, f"{wait:.3f}")
    return await self._take(queue, token, limit, lease)


async def main(url: str, jobs: int) -> None:
    url = f"{url}{'&' if '?' in url else '?'}prefix=pjpick{uuid.uuid4().hex[:6]}"
    worker, producer = RedisBackend(url), RedisBackend(url)
    await worker.open()
    await producer.open()
    queue = Queue(QUEUE, producer)
    one_trip = type(worker)._wait_then_take
    samples: dict[str, list[float]] = {"one trip": [], "two trips": []}
    try:
        for block in range(max(jobs // BLOCK, 2)):
            way = "two trips" if block % 2 else "one trip"
            chosen: Any = _two_trips if block % 2 else one_trip
            worker._wait_then_take = chosen.__get__(worker)  # type: ignore[method-assign]
            for _ in range(BLOCK):
                fetch = asyncio.ensure_future(worker.fetch(QUEUE, "w", 1, 30.0, 5.0))
                await asyncio.sleep(0.004)  # blocked on the wake-up key by now
                started = time.perf_counter()
                await queue.add("x", {})
                got = await fetch
                samples[way].append((time.perf_counter() - started) * 1000)
                if len(got) != 1:
                    raise SystemExit(f"expected one job, got {len(got)}")
                done = Finish(got[0].id, "completed", 1, time.time())
                await worker.finish(QUEUE, "w", [done], 0, 30.0)
        for way, ms in samples.items():
            ms.sort()
            print(
                f"{way:>9}: {len(ms)} samples  p50 {statistics.median(ms):.3f} ms  "
                f"p90 {ms[int(0.9 * len(ms))]:.3f}  p99 {ms[int(0.99 * len(ms))]:.3f}"
            )
    finally:
        await queue.obliterate()
        await worker.close()
        await producer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.url, args.jobs))
    else:
        asyncio.run(main(args.url, args.jobs))
