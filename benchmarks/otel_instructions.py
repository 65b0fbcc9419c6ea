"""What OpenTelemetry tracing costs a Redis worker per job, in CPU instructions (valgrind's
callgrind counts them; unlike times, the load of a shared machine does not change them).

    .venv/bin/python benchmarks/otel_instructions.py [--jobs 4000]

Each variant is a process of its own under ``valgrind --tool=callgrind``: it adds N no-op jobs
(``add_bulk`` of 100), then one worker at concurrency 100 processes them. It runs with N =
``--jobs`` and 2N, with and without the worker, so the worker's instructions per job are
``((all - adds) at 2N - (all - adds) at N) / N``: what a process, a tracer provider and a
worker cost once cancels out. Python's ``random`` is seeded: the traces sampled are the same
in every run (their count is printed). Variants of the worker (the adds are traced at 1 %, as
``otel_cost.py``'s ``otel-1%``, but for ``off``):

- ``off``: no telemetry anywhere;
- ``carried``: the jobs carry their trace context, the worker has no telemetry;
- ``null``: the worker's telemetry is one that does nothing (what the worker spends around it);
- ``otel-1%``: the worker traces with ``OtelTelemetry`` and ``ParentBased(TraceIdRatioBased
  (0.01))``;
- ``otel``: every add and run traced and sampled (the adds too), so ``otel - otel-1%`` is what a
  sampled run costs more than an unsampled one. The seeded ``otel-1%`` runs sample no trace (a
  trace is an add of 100 jobs: too few of them to sample 1 % in a count), so the last line adds
  1 % of that difference: the cost at 1 % sampling with its sampled runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from otel_cost import MODES, QUEUE, Mode

from polyjobs import Job, Queue, Worker
from polyjobs.backends.redis import RedisBackend

VARIANTS = ("off", "carried", "null", "otel-1%", "otel")


class Null:
    """A telemetry that does nothing (its runs' context manager is one shared object)."""

    scope = contextlib.nullcontext()

    def adding(self, queue: str, jobs: Any) -> Any:
        raise AssertionError("the adds are traced by OtelTelemetry or not at all")

    def processing(self, queue: str, job: Job) -> Any:
        return self.scope


async def child(variant: str, jobs: int, adds_only: bool, url: str) -> None:
    random.seed(7)
    name = variant if variant in ("off", "otel") else "otel-1%"
    mode = Mode(name, *MODES[name])
    worker_telemetry = {"null": Null(), "otel-1%": mode.telemetry, "otel": mode.telemetry}.get(
        variant
    )
    backend = RedisBackend(url)
    await backend.open()
    try:
        await backend.obliterate(QUEUE)
        queue = Queue(QUEUE, backend, telemetry=mode.telemetry)
        for base in range(0, jobs, 100):
            await queue.add_bulk([("job", {"i": i}) for i in range(base, min(base + 100, jobs))])
        if not adds_only:

            async def noop(job: Job) -> None:
                return None

            worker = Worker(
                QUEUE, noop, backend, concurrency=100, schedule=False, telemetry=worker_telemetry
            )
            await worker.run(burst=True)
        await backend.obliterate(QUEUE)
    finally:
        await backend.close()
    if mode.provider is not None:
        mode.provider.force_flush()
        print(f"sampled runs: {mode.exporter.runs}")
        mode.provider.shutdown()


def counted(variant: str, jobs: int, adds_only: bool) -> tuple[int, str]:
    """(instructions, the child's output) of one variant under callgrind."""
    url = f"redis://127.0.0.1:6379/0?prefix=bench-oi-{uuid.uuid4().hex[:6]}"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        variant,
        "--jobs",
        str(jobs),
        "--url",
        url,
    ] + (["--adds-only"] if adds_only else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind: {done.stderr[-500:]}")
    return int(found[1]), done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--adds-only", action="store_true")
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.jobs, args.adds_only, args.url))
        return
    # every variant with N and 2N jobs, and the adds alone: what the worker spends per job is
    # the difference (the fixed costs of a process, a provider, a worker cancel out)
    runs = [
        (variant, jobs, adds_only)
        for jobs in (args.jobs, 2 * args.jobs)
        for variant, adds_only in [(v, False) for v in VARIANTS]
        + [("off", True), ("carried", True), ("otel", True)]
    ]
    with ThreadPoolExecutor(2) as pool:  # two at a time: the counts do not depend on it
        counts = pool.map(lambda run: counted(*run), runs)
        results = dict(zip(runs, counts, strict=True))

    def worker(variant: str, jobs: int) -> int:
        adds_of = variant if variant in ("off", "otel") else "carried"
        adds = results[(adds_of, jobs, True)][0]
        return results[(variant, jobs, False)][0] - adds

    per_job = {}
    for variant in VARIANTS:
        per_job[variant] = (worker(variant, 2 * args.jobs) - worker(variant, args.jobs)) / args.jobs
        outputs = " / ".join(results[(variant, n, False)][1] for n in (args.jobs, 2 * args.jobs))
        print(f"{variant:>8}: {per_job[variant]:,.0f} instructions per job {outputs}".rstrip(" /"))
    for variant in VARIANTS[1:]:
        extra = per_job[variant] - per_job["off"]
        print(f"{variant}/off: {per_job[variant] / per_job['off']:.3f} (+{extra:,.0f} per job)")
    sampled_run = per_job["otel"] - per_job["otel-1%"]
    at_1 = per_job["otel-1%"] + sampled_run / 100
    print(
        f"otel-1% with 1 % of its runs sampled (+{sampled_run:,.0f} each)/off: "
        f"{at_1 / per_job['off']:.3f} (+{at_1 - per_job['off']:,.0f} per job)"
    )


if __name__ == "__main__":
    main()
