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
"""

from __future__ import annotations

import argparse
import json
import os
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


def _start(src: str, mode: str, url: str, n: int, concurrency: int = 10) -> Any:
    env = {**os.environ, "POLYJOBS_BENCH_SRC": src}
    argv = [str(project_python()), str(PEER), mode, "--url", url, "--n", str(n)]
    argv += ["--concurrency", str(concurrency), "--rate", "200"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=PEER.parent)


def _result(proc: Any) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=300)
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
    args = parser.parse_args()
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
                    a, b, text = _step(trees[rev], step, url, args.n)
                    found.setdefault((step, rev), []).append((a, b))
                    print(f"round {i} {rev:>12} {step:>4}: {text}", flush=True)
    finally:
        server.stop()
    print("medians:")
    for (step, rev), values in sorted(found.items()):
        a = statistics.median(v[0] for v in values)
        b = statistics.median(v[1] for v in values)
        what = "p50 / p99 ms" if step == "pick" else "jobs/s / worker CPU µs per job"
        print(f"  {step:>4} {rev:>12}: {a:9,.3f} / {b:8.3f}  ({what})")


if __name__ == "__main__":
    main()
