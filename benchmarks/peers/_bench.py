"""What every Python peer script shares: arguments, the completion recorder, output.

A peer script is run by ``benchmarks/run.py`` as ``<python> peers/<lib>.py MODE --url URL --n N
[--concurrency C] [--rate R] [--batch B]`` and prints ``READY`` once its worker listens and one
``RESULT {json}`` line at the end. Modes:

* ``enqueue-single`` / ``enqueue-bulk``: add N no-op jobs, timed (``elapsed`` seconds; single
  adds also report the process's CPU seconds, ``cpu``).
* ``enqueue-inflight``: add N no-op jobs with single adds, 50 awaited at a time (50 loops each
  awaiting one add after another), timed; a library with a blocking API reports it unsupported.
* ``fill``: add N no-op jobs as fast as the library allows, untimed (before a processing run).
* ``work``: one worker at concurrency C until N jobs have run; reports the first and last
  completion times, the process CPU seconds between them, pick-up latencies and the process RSS
  at the end.
* ``produce``: add N jobs at R jobs/s, each carrying its enqueue wall-clock time ``t``.

Every job's data is ``{"t": <time.time() at enqueue>}``; the no-op processor calls
:meth:`Recorder.hit` with it, which is all the work a job does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode",
        choices=["enqueue-single", "enqueue-inflight", "enqueue-bulk", "fill", "work", "produce"],
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", default="", help="write a cProfile of `work` here")
    return parser.parse_args(argv)


def rss_mb() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Recorder:
    """Counts completions (thread-safe) and calls ``on_done`` once N jobs have run."""

    def __init__(self) -> None:
        self.n = 0
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.cpu_first = 0.0  # process CPU seconds (all threads) at the first and last hit
        self.cpu_last = 0.0
        self.latencies: list[float] = []
        self.on_done: Callable[[], None] = lambda: None
        self._lock = threading.Lock()

    def start(self, n: int, on_done: Callable[[], None]) -> None:
        self.n = n
        self.on_done = on_done

    def hit(self, data: Any) -> None:
        now = time.time()
        mono = time.perf_counter()
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.first = mono
                self.cpu_first = time.process_time()
            if isinstance(data, dict) and "t" in data:
                self.latencies.append(now - float(data["t"]))
            if self.count == self.n:
                self.last = mono
                self.cpu_last = time.process_time()
                self.on_done()

    def result(self, concurrency: int) -> dict[str, Any]:
        return {
            "count": self.count,
            "concurrency": concurrency,
            "span": self.last - self.first,
            "cpu_span": self.cpu_last - self.cpu_first,
            "rss_mb": rss_mb(),
            "latencies": self.latencies,
        }


REC = Recorder()
INFLIGHT = 50  # adds in flight in enqueue-inflight
_PROFILE: dict[str, Any] = {}


def start_profile(path: str) -> None:
    """Profile this process with cProfile until :func:`finish` (which writes ``path``)."""
    if path:
        import cProfile

        _PROFILE["path"] = path
        _PROFILE["profiler"] = profiler = cProfile.Profile()
        profiler.enable()


def job_data() -> dict[str, float]:
    return {"t": time.time()}


def ready() -> None:
    print("READY", flush=True)


def finish(result: dict[str, Any]) -> None:
    """Print the result and leave at once: a library's own shutdown is not measured."""
    if _PROFILE:
        _PROFILE["profiler"].disable()
        _PROFILE["profiler"].dump_stats(_PROFILE["path"])
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def batches(n: int, size: int) -> Iterator[int]:
    """Sizes of consecutive batches covering n jobs."""
    done = 0
    while done < n:
        step = min(size, n - done)
        yield step
        done += step


def paced(n: int, rate: float) -> Iterator[float]:
    """Yield how long to sleep before each of n jobs so they go out at ``rate`` per second."""
    start = time.perf_counter()
    for i in range(n):
        yield max(0.0, start + i / rate - time.perf_counter())


async def apaced(n: int, rate: float) -> AsyncIterator[int]:
    import asyncio

    for i, delay in enumerate(paced(n, rate)):
        if delay:
            await asyncio.sleep(delay)
        yield i


def spaced(n: int, rate: float) -> Iterator[int]:
    for i, delay in enumerate(paced(n, rate)):
        if delay:
            time.sleep(delay)
        yield i


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def redis_db(url: str) -> tuple[str, int, int]:
    """(host, port, db) of a ``redis://host:port/db`` URL."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379, int(parsed.path.strip("/") or 0)


def done_exits(concurrency: int) -> Callable[[], None]:
    """The ``on_done`` that reports and exits from inside the last job."""
    return lambda: finish(REC.result(concurrency))


async def _inflight(n: int, add_one: Callable[[], Any]) -> float:
    """Seconds to add n jobs from INFLIGHT loops, each awaiting one add after another."""
    import asyncio

    left = [n]

    async def adder() -> None:
        while left[0] > 0:
            left[0] -= 1
            await add_one()

    start = time.perf_counter()
    await asyncio.gather(*(adder() for _ in range(INFLIGHT)))
    return time.perf_counter() - start


async def drive_async(
    args: argparse.Namespace,
    add_one: Callable[[], Any],
    start_worker: Callable[[int], Any],
    add_many: Callable[[int], Any] | None = None,
    bulk_how: str = "",
) -> None:
    """Run one mode for an asyncio library. ``add_one()`` and ``add_many(k)`` are coroutine
    functions; ``start_worker(c)`` starts a worker in this loop (returning a task or None)."""
    import asyncio

    n = args.n
    if args.mode == "enqueue-single":
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await add_one()
        finish({"elapsed": time.perf_counter() - start, "cpu": time.process_time() - cpu})
    if args.mode == "enqueue-inflight":
        finish({"elapsed": await _inflight(n, add_one)})
    if args.mode == "enqueue-bulk" or args.mode == "fill":
        if add_many is None:
            if args.mode == "enqueue-bulk":
                finish({"unsupported": "no bulk enqueue API"})
            for size in batches(n, 50):  # 50 at once stays under client pool limits
                await asyncio.gather(*(add_one() for _ in range(size)))
            finish({})
        start = time.perf_counter()
        for size in batches(n, args.batch):
            await add_many(size)
        finish({"elapsed": time.perf_counter() - start, "how": bulk_how})
    if args.mode == "produce":
        async for _ in apaced(n, args.rate):
            await add_one()
        finish({})
    REC.start(n, done_exits(args.concurrency))
    start_profile(args.profile)
    task = start_worker(args.concurrency)
    ready()
    if task is not None:
        await task
    await asyncio.Event().wait()


def drive_sync(
    args: argparse.Namespace,
    add_one: Callable[[], Any],
    run_worker: Callable[[int], Any],
    add_many: Callable[[int], Any] | None = None,
    bulk_how: str = "",
) -> None:
    """Run one mode for a library with a blocking API; ``run_worker(c)`` blocks forever."""
    n = args.n
    if args.mode == "enqueue-single":
        cpu = time.process_time()
        elapsed = timed(lambda: [add_one() for _ in range(n)])
        finish({"elapsed": elapsed, "cpu": time.process_time() - cpu})
    if args.mode == "enqueue-inflight":
        finish({"unsupported": "blocking API: one add in flight per thread"})
    if args.mode in ("enqueue-bulk", "fill"):
        if add_many is None:
            if args.mode == "enqueue-bulk":
                finish({"unsupported": "no bulk enqueue API"})
            for _ in range(n):
                add_one()
            finish({})
        elapsed = timed(lambda: [add_many(size) for size in batches(n, args.batch)])
        finish({"elapsed": elapsed, "how": bulk_how})
    if args.mode == "produce":
        for _ in spaced(n, args.rate):
            add_one()
        finish({})
    REC.start(n, done_exits(args.concurrency))
    start_profile(args.profile)
    ready()
    run_worker(args.concurrency)
    threading.Event().wait()
