"""The worker's own Python per job: a backend that hands out the next jobs at once (no I/O).

    .venv/bin/python benchmarks/worker_loop.py [--rev main] [--rounds 5] [--jobs 20000]

What a job costs the worker itself (slots, tasks, the finish loop, ``Job``, outcomes) apart
from any backend: ``finish`` returns after one event-loop turn with as many new jobs as asked,
so a worker at concurrency C runs in rounds of C jobs as it does on Redis. Each measurement is
a subprocess (the working tree, and with ``--rev`` that revision via ``git archive``,
alternating), printing the process CPU µs per job at c=1 and c=10; medians at the end. CPU,
not wall time, so other load on the machine moves it little.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import export_revision, import_polyjobs_from_bench_source


class _Instant:
    """A backend that hands out ``jobs`` fresh records, as many as asked, at once."""

    capabilities: frozenset[str] = frozenset()

    def __init__(self, jobs: int) -> None:
        self.left = jobs
        self.taken = 0

    def take(self, n: int) -> list[Any]:
        from polyjobs.backend import JobRecord

        out = []
        for _ in range(min(n, self.left)):
            self.left -= 1
            self.taken += 1
            out.append(
                JobRecord(
                    id=str(self.taken), name="noop", data={"t": 1.0}, opts={}, state="active",
                    timestamp=0.0, run_at=0.0, priority=0, attempts_made=0, attempts_started=1,
                    stalls=0, progress=None, returnvalue=None, failed_reason=None,
                    stacktrace=None, processed_on=time.time(), finished_on=None, worker="w",
                    lease_until=None,
                )
            )  # fmt: skip
        return out

    async def fetch(self, queue: str, token: str, limit: int, *_: Any) -> list[Any]:
        got = self.take(limit)
        if not got:
            await asyncio.sleep(3600)
        return got

    async def finish(self, queue: str, token: str, fins: Any, fetch: int, lease: float) -> Any:
        from polyjobs.backend import FinishResult

        await asyncio.sleep(0)  # one loop turn, as for a reply
        return FinishResult([], self.take(fetch))

    async def extend(self, *_: Any) -> list[str]:
        return []

    async def recover_stalled(self, *_: Any) -> list[Any]:
        return []

    async def heartbeat(self, *_: Any, **__: Any) -> None:
        pass

    async def release(self, *_: Any) -> list[str]:
        return []

    async def unregister(self, *_: Any) -> None:
        pass


async def _measure(jobs: int, concurrency: int) -> float:
    from polyjobs import Job, Worker

    done = 0
    finished = asyncio.Event()

    async def noop(job: Job) -> None:
        nonlocal done
        done += 1
        if done == jobs:
            finished.set()

    backend: Any = _Instant(jobs)
    worker = Worker("loop", noop, backend, concurrency=concurrency, schedule=False)
    task = asyncio.create_task(worker.run())
    cpu = time.process_time()
    await finished.wait()
    per_job = (time.process_time() - cpu) / jobs * 1e6
    worker.request_close(0)
    await task
    return per_job


def _child(jobs: int, concurrency: int) -> None:
    import_polyjobs_from_bench_source()
    print(asyncio.run(_measure(jobs, concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="", help="also measure this git revision")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.jobs, args.child)
        return
    trees = {"working tree": ""}
    if args.rev:
        src, commit = export_revision(args.rev)
        trees[f"{args.rev} ({commit})"] = src
    found: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for name, src in trees.items():
            for concurrency in (1, 10):
                env = {**os.environ, "POLYJOBS_BENCH_SRC": src} if src else dict(os.environ)
                argv = [sys.executable, __file__, "--jobs", str(args.jobs)]
                out = subprocess.run(
                    [*argv, "--child", str(concurrency)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                found.setdefault((name, concurrency), []).append(float(out))
    for (name, concurrency), values in found.items():
        rounds = " / ".join(f"{v:.1f}" for v in values)
        print(
            f"{name:>24} c={concurrency:<2} CPU µs/job: median {statistics.median(values):5.1f}"
            f"  ({rounds})"
        )


if __name__ == "__main__":
    main()
