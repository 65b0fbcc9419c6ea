"""Fairness of job groups: do 50 small groups keep their pick-up latency while one group holds
a backlog of 10,000 jobs?

    .venv/bin/python benchmarks/groups.py [--redis-url redis://127.0.0.1:6379/0] [--only sqlite]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test] [--rounds 3] [--spread 0.5]

For each backend (Redis, SQLite in a temporary file, PostgreSQL in schema ``bench_groups``
when ``--postgres-url`` is given), four runs of the same arrivals: 50
groups x 20 jobs (1,000 "small" jobs, round-robin over the groups) added one by one at a
steady 200 jobs/s by this process, while one worker process (concurrency 10, each job an
``asyncio.sleep`` of 5 ms, so about 2,000 jobs/s at most) runs the queue:

* ``alone``: only the small jobs;
* ``big group``: 10,000 jobs of one more group are waiting when the small ones start to come;
* ``capped``: the same, with ``group_concurrency`` 5: the big group may take only half of the
  worker's slots, so a small group's job finds a free slot instead of waiting for one;
* ``no groups``: the same backlog and arrivals with no group at all (plain FIFO), to show what
  groups change.

Turns alone bound a small job's wait to one turn, but a worker whose every slot is busy still
makes it wait for a slot (up to one job's 5 ms, and the worker refills its slots in batches):
``big group`` against ``alone`` is that wait. Keeping latency needs free capacity for the
other groups, which is what the group cap gives (``capped``).

With every job exactly 5 ms, the ten jobs one take starts end together and are finished and
replaced by one call: the worker takes every ~6.5 ms, ten at a time, and a small job waits for
the next of those takes (benchmarks/README.md, "where a small group's wait goes").
``--spread S`` makes each job's sleep uniform in ``5 ms x [1 - S, 1 + S]`` (same mean), as
real jobs vary: the slots drift apart and the worker takes a job or two every millisecond.

Latency is ``processed_on - timestamp`` of each small job (both stamped by the backend's
caller on this machine). ``left`` is how many backlog jobs were still waiting when the last
small job started: above 0 means the backlog was there the whole time. With ``--rounds N``
the four runs are repeated N times, side by side, and the median of each column is printed
last (a single p99 of 1,000 jobs moves a lot on a shared machine).
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

Q = "bench-groups"
SMALL_GROUPS, PER_GROUP, BIG = 50, 20, 10_000
RATE = 200.0
JOB_SECONDS = 0.005
CONCURRENCY = 10


async def _child_worker(url: str, spread: float) -> None:
    async def _sleep(job: Job) -> Any:
        await asyncio.sleep(JOB_SECONDS * (1 + spread * (2 * random.random() - 1)))
        return None

    async with open_backend(url) as backend:
        worker = Worker(Q, _sleep, backend, concurrency=CONCURRENCY, schedule=False)
        task = asyncio.create_task(worker.run())
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
        await worker.close()
        await task


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


async def scenario(
    url: str, big: bool, grouped: bool, cap: int | None, spread: float
) -> dict[str, float]:
    async with open_backend(url) as backend:
        await backend.obliterate(Q)
        queue = Queue(Q, backend)
        if cap is not None:
            await queue.set_group_concurrency(cap)
        if big:
            opts: dict[str, Any] = {"remove_on_complete": True}
            if grouped:
                opts["group"] = "big"
            for first in range(0, BIG, 1000):
                await queue.add_bulk([("big", i, opts) for i in range(first, first + 1000)])
        child = subprocess.Popen(
            [sys.executable, __file__, "--child-worker", url, "--spread", str(spread)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "ready"
            start = time.perf_counter()
            n = SMALL_GROUPS * PER_GROUP
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
                opts = {"remove_on_complete": False}
                if grouped:
                    opts["group"] = f"small-{i % SMALL_GROUPS}"
                await queue.add("small", i, **opts)
            deadline = time.monotonic() + 120
            while (await queue.counts())["completed"] < n:
                if time.monotonic() > deadline:
                    raise SystemExit("the small jobs did not all run within 120 s")
                await asyncio.sleep(0.05)
            left = (await queue.counts())["waiting"]
        finally:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=60)
        done = await queue.jobs("completed")
        latencies = [(j.processed_on or 0.0) - j.timestamp for j in done if j.name == "small"]
        await backend.obliterate(Q)
    return {
        "p50": _pct(latencies, 0.50),
        "p99": _pct(latencies, 0.99),
        "max": _pct(latencies, 1.0),
        "left": float(left),
        "n": float(len(latencies)),
    }


async def main(
    redis_url: str, postgres_url: str, only: set[str], rounds: int, spread: float
) -> None:
    each = f"{JOB_SECONDS * 1000:.0f} ms per job"
    if spread:
        low, high = JOB_SECONDS * (1 - spread) * 1000, JOB_SECONDS * (1 + spread) * 1000
        each = f"{low:g}-{high:g} ms per job (uniform)"
    print(
        f"{SMALL_GROUPS} groups x {PER_GROUP} jobs at {RATE:.0f}/s; backlog {BIG:,} jobs; "
        f"worker c={CONCURRENCY}, {each}"
    )
    header = f"{'backend':>8} {'run':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'left':>6}"
    print(header)
    runs = (
        ("alone", False, True, None),
        ("big group", True, True, None),
        ("capped", True, True, CONCURRENCY // 2),
        ("no groups", True, False, None),
    )
    with tempfile.TemporaryDirectory() as tmp:
        sep = "&" if "?" in redis_url else "?"
        urls = {
            "redis": f"{redis_url}{sep}prefix=bench-groups",
            "sqlite": f"sqlite:///{Path(tmp) / 'groups.db'}",
        }
        if postgres_url:
            sep = "&" if "?" in postgres_url else "?"
            urls["postgres"] = f"{postgres_url}{sep}schema=bench_groups"
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for name, url in urls.items():
            if only and name not in only:
                continue
            for _ in range(rounds):
                for label, big, grouped, cap in runs:
                    r = await scenario(url, big, grouped, cap, spread)
                    results.setdefault((name, label), []).append(r)
                    print(_row(name, label, r, results[(name, "alone")][-1]), flush=True)
        if rounds > 1:
            print(f"median of {rounds} rounds:")
            print(header)
            for (name, label), rs in results.items():
                med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                alone = {
                    k: statistics.median(r[k] for r in results[(name, "alone")]) for k in rs[0]
                }
                print(_row(name, label, med, alone))


def _row(name: str, label: str, r: dict[str, float], alone: dict[str, float]) -> str:
    ratio = r["p99"] / alone["p99"] if alone["p99"] else float("nan")
    return (
        f"{name:>8} {label:>10} {r['p50']:8.1f} {r['p99']:8.1f} {r['max']:8.1f} "
        f"{r['left']:6.0f}   p99 x{ratio:.1f} of alone"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres-url", default="", help="also PostgreSQL (schema bench_groups)")
    parser.add_argument("--only", default="", help="comma-separated: redis,sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="each job sleeps 5 ms x uniform(1 - S, 1 + S), S in [0, 1) (default 0: 5 ms)",
    )
    parser.add_argument("--child-worker", metavar="URL")
    args = parser.parse_args()
    if not 0.0 <= args.spread < 1.0:
        parser.error(f"--spread must be at least 0 and below 1, not {args.spread}")
    if args.child_worker:
        asyncio.run(_child_worker(args.child_worker, args.spread))
    else:
        only = {s for s in args.only.split(",") if s}
        asyncio.run(main(args.redis_url, args.postgres_url, only, max(args.rounds, 1), args.spread))
