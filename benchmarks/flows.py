"""Flows: polyjobs (SQLite, Redis, PostgreSQL) against BullMQ Node's FlowProducer, side by side.

    .venv/bin/python benchmarks/flows.py [--repeat 3] [--children 10000]
        [--only sqlite,redis,postgres,bullmq] [--postgres URL]

Shapes: ``wide``, one parent and N children (10,000) in another queue; ``dag``, 1,000 jobs
with shared children (a top job, 10 middle jobs, 990 leaves each listed under two middle jobs:
1,980 edges). BullMQ flows are trees, so its side of ``dag`` is the tree of the same node count
(``tree1000``: 10 middle jobs of 99 leaves). For each: the time to add the flow (one atomic
call) and the time to run it (workers started -> the top job completed; leaves return 1,
parents the sum of their children's values, which is checked). Workers: concurrency 50 per
queue, in the process that added the flow. Redis is a private redis-server on a free port;
SQLite a fresh file per run; PostgreSQL a fresh schema per run on ``--postgres`` (default: the
``test`` database on 127.0.0.1:5432), dropped afterwards. Prints a table and the load
average; not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NODE_DIR, RedisServer, ensure_node

from polyjobs import FlowProducer, Job, Worker, open_backend
from polyjobs.backends.postgres.testing import fresh_schema
from polyjobs.worker_options import WorkerOptions

CONCURRENCY = 50


def wide(children: int) -> dict[str, Any]:
    return {
        "name": "top",
        "queue": "tops",
        "children": [
            {"name": "leaf", "queue": "leaves", "data": {"i": i}} for i in range(children)
        ],
    }


def dag() -> dict[str, Any]:
    """1,000 jobs: top -> 10 mids; 990 leaves, leaf k under mids k % 10 and (k + 1) % 10."""
    mids: list[dict[str, Any]] = [
        {"name": "mid", "queue": "tops", "data": {"m": m}, "children": []} for m in range(10)
    ]
    for k in range(990):
        leaf = {"name": "leaf", "queue": "leaves", "job_id": f"leaf-{k}", "data": {"k": k}}
        mids[k % 10]["children"].append(leaf)
        mids[(k + 1) % 10]["children"].append({"queue": "leaves", "job_id": f"leaf-{k}"})
    return {"name": "top", "queue": "tops", "children": mids}


async def run_polyjobs(url: str, tree: dict[str, Any]) -> dict[str, Any]:
    options = WorkerOptions(concurrency=CONCURRENCY, schedule=False, block=0.5)
    async with open_backend(url) as backend:
        start = time.perf_counter()
        top = await FlowProducer(backend).add(tree)
        added = time.perf_counter() - start
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def leaf(job: Job) -> int:
            return 1

        async def parent(job: Job) -> int:
            return sum((await job.children_values()).values())

        def completed(job: Job, value: Any) -> None:
            if job.id == top.job.id and not done.done():
                done.set_result(value)

        workers = [
            Worker("leaves", leaf, backend, options=options),
            Worker("tops", parent, backend, options=options),
        ]
        workers[1].on("completed", completed)
        start = time.perf_counter()
        tasks = [asyncio.create_task(w.run()) for w in workers]
        value = await asyncio.wait_for(done, 600)
        ran = time.perf_counter() - start
        for w in workers:
            await w.close(5)
        await asyncio.gather(*tasks)
    return {"add": added, "run": ran, "value": value}


def run_node(url: str, shape: str, children: int) -> dict[str, Any]:
    done = subprocess.run(
        ["node", "flows.js", shape, "--url", url, "--children", str(children)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    raise RuntimeError(f"bullmq-node failed: {done.stderr.strip()[-500:]}")


def flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--only", default="sqlite,redis,postgres,bullmq")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    only = set(args.only.split(","))
    problem = ensure_node(print) if "bullmq" in only else None
    if problem:
        sys.exit(f"bullmq-node unavailable: {problem}")
    server = RedisServer()
    base = server.start()
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    expected = {"wide": args.children, "dag": 1980, "tree1000": 990}
    try:
        for _ in range(args.repeat):
            for shape in ("wide", "dag"):
                tree = wide(args.children) if shape == "wide" else dag()
                if "sqlite" in only:
                    with tempfile.TemporaryDirectory() as tmp:
                        rows.setdefault((shape, "polyjobs sqlite"), []).append(
                            asyncio.run(run_polyjobs(f"sqlite:///{tmp}/flows.db", tree))
                        )
                if "redis" in only:
                    flush(f"{base}/1")
                    rows.setdefault((shape, "polyjobs redis"), []).append(
                        asyncio.run(run_polyjobs(f"{base}/1", tree))
                    )
                if "postgres" in only:
                    with fresh_schema(args.postgres, "pjbench") as url:
                        rows.setdefault((shape, "polyjobs postgres"), []).append(
                            asyncio.run(run_polyjobs(url, tree))
                        )
                if "bullmq" in only:
                    flush(f"{base}/2")
                    node_shape = "wide" if shape == "wide" else "tree1000"
                    rows.setdefault((shape, f"bullmq-node ({node_shape})"), []).append(
                        run_node(f"{base}/2", node_shape, args.children)
                    )
    finally:
        server.stop()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; repeats {args.repeat}")
    print(f"{'shape':<6} {'library':<24} {'add s (median)':>15} {'run s (median)':>15}  runs")
    for (shape, library), results in rows.items():
        for r in results:
            want = expected["tree1000" if "tree1000" in library else shape]
            assert r["value"] == want, (shape, library, r["value"])
        add = median(r["add"] for r in results)
        ran = median(r["run"] for r in results)
        detail = " ".join(f"{r['add']:.2f}/{r['run']:.2f}" for r in results)
        print(f"{shape:<6} {library:<24} {add:>15.3f} {ran:>15.3f}  {detail}")


if __name__ == "__main__":
    main()
