"""polyjobs revisions against each other on Redis, alternating round by round.

    .venv/bin/python benchmarks/redis_alternate.py main HEAD [--rounds 8] [--n 5000]
        [--steps c1,c10,pick]

``run.py`` measures one revision per run, and a ratio between two runs minutes apart on this
shared machine moves with the load; here the revisions take turns within one run (the order
flipped every round), on one private ``redis-server``, with the same peer script as ``run.py``
(``peers/peer_polyjobs.py``). Steps: ``cN`` processes N pre-filled no-op jobs at concurrency N
(jobs/s and the worker's CPU µs per job between its first and last job); ``pick`` is a worker
at concurrency 10 left idle 1.5 s, then 1,000 jobs added at 200/s by another process (pick-up
p50/p99 ms). Prints every round, then the medians. A revision is anything ``git rev-parse``
takes; ``.`` is the working tree.

``--callgrind``: instead of rates, the instructions the worker process runs per job (Python,
C, the event loop; not the kernel's), counted by callgrind, exact from run to run and blind to
the load: each step runs the worker under ``valgrind --tool=callgrind`` twice, over ``--n`` and
four times ``--n`` jobs, and the difference is divided by the jobs between (start-up and
imports cancel out). ``pick`` then adds at 20 jobs/s (the worker runs ~50 times slower).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RedisServer, Resp, export_revision, project_python

PEER = Path(__file__).resolve().parent / "peers" / "peer_polyjobs.py"
PICKUP_JOBS = 1000


CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")


def _start(
    src: str,
    mode: str,
    url: str,
    n: int,
    concurrency: int = 10,
    rate: int = 200,
    under: tuple[str, ...] = (),
) -> Any:
    env = {**os.environ, "POLYJOBS_BENCH_SRC": src}
    argv = [*under, str(project_python()), str(PEER), mode, "--url", url, "--n", str(n)]
    argv += ["--concurrency", str(concurrency), "--rate", str(rate)]
    stderr = subprocess.PIPE if under else None
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=PEER.parent
    )


def _instructions(src: str, step: str, url: str, n: int, redis: Resp) -> int:
    """Instructions the worker process ran (callgrind's ``Collected``) over ``n`` jobs."""
    redis.call("SELECT", "1")
    redis.call("FLUSHDB")
    if step == "pick":
        worker = _start(src, "work", url, n, under=CALLGRIND)
        if (worker.stdout.readline() or "").strip() != "READY":
            raise SystemExit("the worker did not start")
        time.sleep(3)
        _result(_start(src, "produce", url, n, rate=20))
    else:
        _result(_start(src, "fill", url, n))
        worker = _start(src, "work", url, n, int(step[1:]), under=CALLGRIND)
    _, err = worker.communicate(timeout=1200)
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{err[-2000:]}")
    return int(found.group(1))


def _per_job(src: str, step: str, url: str, n: int, redis: Resp) -> tuple[float, float, str]:
    small, large = (_instructions(src, step, url, size, redis) for size in (n, 4 * n))
    per_job = (large - small) / (3 * n)
    return per_job, 0.0, f"{per_job:11,.0f} instructions per job ({small:,} / {large:,})"


def _result(proc: Any) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=1200)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            found: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return found
    raise SystemExit(f"no RESULT from the peer:\n{out}")


def _step(src: str, step: str, url: str, n: int) -> tuple[float, float, str]:
    if step == "pick":
        worker = _start(src, "work", url, PICKUP_JOBS)
        if (worker.stdout.readline() or "").strip() != "READY":
            raise SystemExit("the worker did not start")
        time.sleep(1.5)
        _result(_start(src, "produce", url, PICKUP_JOBS))
        latencies = sorted(_result(worker)["latencies"])
        p50, p99 = statistics.median(latencies), latencies[int(0.99 * len(latencies))]
        return p50 * 1000, p99 * 1000, f"p50 {p50 * 1000:.3f} ms  p99 {p99 * 1000:.3f} ms"
    concurrency = int(step[1:])
    _result(_start(src, "fill", url, n))
    out = _result(_start(src, "work", url, n, concurrency))
    rate, cpu = (n - 1) / out["span"], out["cpu_span"] / (n - 1) * 1e6
    return rate, cpu, f"{rate:8,.0f} jobs/s  worker CPU {cpu:6.1f} µs/job"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--steps", default="c1,c10,pick")
    parser.add_argument(
        "--callgrind", action="store_true", help="instructions per job (--n 100 is plenty)"
    )
    args = parser.parse_args()
    if args.callgrind and shutil.which("valgrind") is None:
        sys.exit("--callgrind needs valgrind")
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if any(s != "pick" and not (s[:1] == "c" and s[1:].isdigit()) for s in steps):
        sys.exit(f"steps are cN or pick, got {args.steps!r}")
    trees = {}
    for rev in args.revisions:
        trees[rev] = str(REPO) if rev == "." else export_revision(rev)[0]
    server = RedisServer()
    base = server.start()
    redis = Resp("127.0.0.1", server.port)
    url = f"{base}/1"
    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for i in range(args.rounds):
            order = list(trees) if i % 2 == 0 else list(trees)[::-1]
            for rev in order:
                for step in steps:
                    redis.call("SELECT", "1")
                    redis.call("FLUSHDB")
                    if args.callgrind:
                        a, b, text = _per_job(trees[rev], step, url, args.n, redis)
                    else:
                        a, b, text = _step(trees[rev], step, url, args.n)
                    found.setdefault((step, rev), []).append((a, b))
                    print(f"round {i} {rev:>12} {step:>4}: {text}", flush=True)
    finally:
        server.stop()
    print("medians:")
    for (step, rev), values in sorted(found.items()):
        a = statistics.median(v[0] for v in values)
        b = statistics.median(v[1] for v in values)
        if args.callgrind:
            print(f"  {step:>4} {rev:>12}: {a:11,.0f} instructions per job")
            continue
        what = "p50 / p99 ms" if step == "pick" else "jobs/s / worker CPU µs per job"
        print(f"  {step:>4} {rev:>12}: {a:9,.3f} / {b:8.3f}  ({what})")


if __name__ == "__main__":
    main()
