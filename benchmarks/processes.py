"""Throughput of ``polyjobs start --processes N`` for N = 1, 2, 4 on Redis and on SQLite.

    .venv/bin/python benchmarks/processes.py [--jobs 20000]
        [--procs 1,2,4] [--backends redis,sqlite] [--concurrency 10] [--sleep-ms 0]

Each run adds ``--jobs`` no-op jobs (or ``--sleep-ms`` of ``asyncio.sleep`` each) in bulk, then
runs ``polyjobs start -P N --burst`` on them, its output to /dev/null, exactly as a user would.
``1q`` is one plain ``start`` printing only what a supervised worker prints (not a line per
completed job), to tell the cost of those lines from the cost of supervising.
Measured: the wall time of the command (process starts included), the steady rate (jobs done
between the first and the last poll of the queue's counts that saw progress, polled every
50 ms), the CPU the command and its children used (user + sys) and, on Redis, the server's CPU
per job; ``cores`` is CPU seconds per wall second of the steady part, roughly.

This module is also the application the runs start (``-A processes:app``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from polyjobs import App, Job, Queue, open_backend

HERE = Path(__file__).resolve().parent
POLYJOBS = str(Path(sys.executable).parent / "polyjobs")
QUEUE = "bench-noop"
SLEEP = float(os.environ.get("BENCH_SLEEP_MS", "0")) / 1000

app = App("bench-processes")


@app.queue(QUEUE, concurrency=10)
async def bench_noop(job: Job) -> None:
    if SLEEP:
        await asyncio.sleep(SLEEP)


async def _fill(url: str, jobs: int) -> None:
    async with open_backend(url) as backend:
        await backend.obliterate(QUEUE)
        queue = Queue(QUEUE, backend)
        for base in range(0, jobs, 1000):
            await queue.add_bulk([("noop", {"i": i}) for i in range(base, min(base + 1000, jobs))])


async def _watch(url: str, jobs: int, proc: subprocess.Popen[bytes]) -> tuple[float, float, int]:
    """(first, last, done): the times of the first and last polls that saw progress."""
    first = last = 0.0
    seen = jobs
    async with open_backend(url) as backend:
        queue = Queue(QUEUE, backend)
        while proc.poll() is None:
            counts = await queue.counts()
            left = int(counts["waiting"]) + int(counts["active"]) + int(counts["delayed"])
            now = time.perf_counter()
            if left < jobs and not first:
                first, seen = now, left
            if left < jobs:
                last, done = now, seen - left
            await asyncio.sleep(0.05)
    return first, last, (done if first else 0)


def _redis_cpu(url: str) -> float:
    import redis

    info = redis.Redis.from_url(url.split("?")[0]).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def one(url: str, procs: int, jobs: int, concurrency: int, quiet: bool = False) -> dict[str, float]:
    asyncio.run(_fill(url, jobs))
    redis = url.startswith("redis")
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server0 = _redis_cpu(url) if redis else 0.0
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "POLYJOBS_HOME": home,
            "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "BENCH_SLEEP_MS": str(SLEEP * 1000),
        }
        if quiet:  # one worker printing what a supervised one prints (not each completed job)
            env["POLYJOBS_SUPERVISED_WORKER"] = "1"
        cmd = [POLYJOBS, "start", "-P", str(procs), "--burst", "-A", "processes:app"]
        cmd += ["-b", url, "-q", QUEUE, "-c", f"{QUEUE}={concurrency}", "--no-schedule"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        first, last, done = asyncio.run(_watch(url, jobs, proc))
        wall = time.perf_counter() - start
        err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"polyjobs start exited {proc.returncode}: {err.strip()}")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    steady = done / (last - first) if last > first else float("nan")
    server = (_redis_cpu(url) - server0) if redis else float("nan")
    return {"wall": wall, "rate": jobs / wall, "steady": steady, "cpu": cpu, "server": server}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--procs", default="1,1q,2,4", help="1q: one quiet worker (see README)")
    parser.add_argument("--backends", default="redis,sqlite")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--sleep-ms", type=float, default=0.0)
    args = parser.parse_args()
    global SLEEP
    SLEEP = args.sleep_ms / 1000
    tag = uuid.uuid4().hex[:8]
    print(f"jobs {args.jobs}, concurrency {args.concurrency} per process, sleep {args.sleep_ms} ms")
    print(
        "| backend | processes | wall s | jobs/s (wall) | jobs/s (steady) | CPU s "
        "| Redis CPU µs/job |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "redis": f"redis://127.0.0.1:6379/0?prefix=benchproc-{tag}",
            "sqlite": f"sqlite:///{tmp}/bench.db",
        }
        for name in args.backends.split(","):
            for procs in args.procs.split(","):
                quiet = procs.endswith("q")
                r = one(urls[name], int(procs.rstrip("q")), args.jobs, args.concurrency, quiet)
                server = f"{r['server'] / args.jobs * 1e6:.0f}" if name == "redis" else "-"
                print(
                    f"| {name} | {procs} | {r['wall']:.1f} | {r['rate']:,.0f} | "
                    f"{r['steady']:,.0f} | {r['cpu']:.1f} | {server} |",
                    flush=True,
                )
        if "redis" in args.backends:
            asyncio.run(_drop(urls["redis"]))


async def _drop(url: str) -> None:
    async with open_backend(url) as backend:
        await backend.obliterate(QUEUE)


if __name__ == "__main__":
    main()
