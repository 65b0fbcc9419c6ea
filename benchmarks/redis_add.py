"""Client cost of Redis adds, two revisions side by side (issue 21; not the benchmark harness,
see benchmarks/README, "The Redis hot path").

    .venv/bin/python benchmarks/redis_add.py [--before main] [--after HEAD] [--rounds 5]
        [--jobs 5000] [--uvloop]

``--before`` and ``--after`` are git revisions (``git archive``d, so the tree may be mid-edit).
Every round runs both, in turn (which goes first alternates), each in a fresh subprocess on one
private redis-server: ``--jobs`` awaited ``Queue.add`` calls one after another, then twice as
many with 50 in flight (50 loops, each awaiting its adds one by one). Each line is the
producer's CPU per add (``time.process_time`` over the timed adds: the client alone, not Redis)
and the rate; the last lines are the medians and after/before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUEUE = "bench-add"
FLIGHT = 50


async def _measure(url: str, jobs: int) -> dict[str, float]:
    from polyjobs import Queue
    from polyjobs.backends.redis import RedisBackend

    backend = RedisBackend(url)
    await backend.open()
    queue = Queue(QUEUE, backend)
    out: dict[str, float] = {}
    try:
        for i in range(300):  # connect, load the script, warm up
            await queue.add("noop", {"i": i})

        async def one_by_one(n: int) -> None:
            for i in range(n):
                await queue.add("noop", {"i": i})

        async def in_flight(n: int) -> None:
            await asyncio.gather(*(one_by_one(n // FLIGHT) for _ in range(FLIGHT)))

        for name, run, n in (("seq", one_by_one, jobs), ("flight", in_flight, jobs * 2)):
            await backend.obliterate(QUEUE)
            cpu, wall = time.process_time(), time.perf_counter()
            await run(n)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[f"{name}_cpu_us"] = cpu / n * 1e6
            out[f"{name}_rate"] = n / wall
    finally:
        await backend.obliterate(QUEUE)
        await backend.close()
    return out


def _child(source: str, url: str, jobs: int, use_uvloop: bool) -> None:
    sys.path.insert(0, source)
    import polyjobs

    if not polyjobs.__file__ or not polyjobs.__file__.startswith(source):
        raise SystemExit(f"polyjobs imported from {polyjobs.__file__}, not {source}")
    if use_uvloop:
        import uvloop

        result = uvloop.run(_measure(url, jobs))
    else:
        result = asyncio.run(_measure(url, jobs))
    print(json.dumps(result))


def _run(source: str, url: str, jobs: int, use_uvloop: bool) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", source, "--url", url, "--jobs", str(jobs)]
    if use_uvloop:
        argv.append("--uvloop")
    env = {**os.environ, "PYTHONPATH": source}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{source}: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _line(label: str, r: dict[str, float]) -> str:
    return (
        f"{label:>16}  one by one: {r['seq_cpu_us']:6.1f} us CPU/add {r['seq_rate']:8,.0f}/s"
        f"   50 in flight: {r['flight_cpu_us']:5.1f} us CPU/add {r['flight_rate']:8,.0f}/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="main")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child, args.url, args.jobs, args.uvloop)
        return

    sys.path.insert(0, str(HERE))
    from _common import PeerError, RedisServer, export_revision

    sides = {}
    for rev in (args.before, args.after):
        source, commit = export_revision(rev)
        sides[f"{rev} ({commit})"] = source
    server = RedisServer()
    try:
        url = server.start() + "/0"
    except PeerError as exc:
        raise SystemExit(str(exc)) from None
    results: dict[str, list[dict[str, float]]] = {label: [] for label in sides}
    try:
        for k in range(args.rounds):
            order = list(sides) if k % 2 == 0 else list(reversed(sides))
            for label in order:
                result = _run(sides[label], url, args.jobs, args.uvloop)
                results[label].append(result)
                print(_line(f"round {k + 1} {label.split()[0]}", result), flush=True)
    finally:
        server.stop()
    medians = {
        label: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for label, rounds in results.items()
    }
    for label, median in medians.items():
        print(_line(f"median {label.split()[0]}", median))
    before, after = medians.values()
    print(
        "after/before: one by one CPU/add "
        f"{after['seq_cpu_us'] / before['seq_cpu_us']:.2f}x, rate "
        f"{after['seq_rate'] / before['seq_rate']:.2f}x; 50 in flight CPU/add "
        f"{after['flight_cpu_us'] / before['flight_cpu_us']:.2f}x, rate "
        f"{after['flight_rate'] / before['flight_rate']:.2f}x"
    )


if __name__ == "__main__":
    main()
