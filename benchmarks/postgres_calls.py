"""Adds on PostgreSQL, call by call: polyjobs' ``Queue.add`` (or ``add_bulk``) of this tree,
of another revision (``--baseline REV``) and pgqueuer's ``enqueue`` take turns, a block of
calls each, in one run; medians per library and the ratios of every turn. It isolates each
library's per-call cost from the disk's swings, which move the separate steps of
``benchmarks/postgres.py`` by up to 2x (every add waits for its commit).

    python benchmarks/postgres_calls.py --baseline main                 # single adds
    python benchmarks/postgres_calls.py --baseline main --batch 500     # bulk adds of 500

Each library runs in its own process (polyjobs@REV from a ``git archive`` of REV, pgqueuer
from ``benchmarks/.peers-postgres``, made by ``benchmarks/postgres.py`` when missing) in its
own schema of the server at ``--url``; the parent tells each in turn to make ``--block``
calls and reads back how long each took (wall and process CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TIMES = "\u00d7"


# -- the child: one library, making calls when told --------------------------------------------
async def polyjobs_calls(url: str, batch: int, schema: str) -> tuple[Any, Any]:
    import asyncpg

    import polyjobs
    from polyjobs import Queue, open_backend

    print(f"polyjobs from {Path(polyjobs.__file__).parent}", file=sys.stderr)
    context = open_backend(f"{url}?schema={schema}")
    backend = await context.__aenter__()
    queue = Queue("calls", backend, default_options={"remove_on_complete": True})
    await queue.obliterate()

    async def call() -> Any:
        if batch:
            return await queue.add_bulk([("job", {"t": time.time()}) for _ in range(batch)])
        return await queue.add("job", {"t": time.time()})

    async def close() -> None:
        await context.__aexit__(None, None, None)
        admin = await asyncpg.connect(url)
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()

    return call, close


async def pgqueuer_calls(url: str, batch: int, schema: str) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    admin = await asyncpg.connect(url)
    await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    await admin.close()
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    queries = Queries(AsyncpgDriver(conn))
    await queries.install()

    async def call() -> Any:
        if batch:
            payloads: list[bytes | None] = [
                json.dumps({"t": time.time()}).encode() for _ in range(batch)
            ]
            return await queries.enqueue(["job"] * batch, payloads, [0] * batch)
        return await queries.enqueue("job", json.dumps({"t": time.time()}).encode())

    async def close() -> None:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()

    return call, close


async def child(kind: str, url: str, batch: int, schema: str) -> None:
    if kind == "pgqueuer":
        call, close = await pgqueuer_calls(url, batch, schema)
    else:
        call, close = await polyjobs_calls(url, batch, schema)
    for _ in range(20):  # warm up: statements prepared, sessions open
        await call()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.strip().isdigit():
            break
        spent = []
        for _ in range(int(line)):
            cpu, start = time.process_time(), time.perf_counter()
            await call()
            spent.append((time.perf_counter() - start, time.process_time() - cpu))
        print(json.dumps(spent), flush=True)
    await close()


# -- the parent: turns, medians, ratios ----------------------------------------------------------
class Contender:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.turns: list[float] = []  # the median of each turn's calls

    def expect_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            sys.exit(f"{self.name} did not start (exit {self.proc.wait()})")

    def turn(self, calls: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{calls}\n")
        self.proc.stdin.flush()
        spent = json.loads(self.proc.stdout.readline())
        self.wall += [w for w, _ in spent]
        self.cpu += [c for _, c in spent]
        self.turns.append(statistics.median(w for w, _ in spent))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(60)


def contenders(args: argparse.Namespace, tree: str, commit: str) -> list[Contender]:
    me = str(Path(__file__).resolve())
    common = ["--url", args.url, "--batch", str(args.batch)]
    out = []
    project = sys.executable
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out.append(
        Contender(
            "polyjobs", [project, me, "--child", "polyjobs", *common, "--schema", "calls_new"], env
        )
    )
    if tree:
        argv = [project, me, "--child", "polyjobs", *common, "--schema", "calls_old"]
        out.append(Contender(f"polyjobs@{commit}", argv, {**env, "POLYJOBS_BENCH_SRC": tree}))
    if not args.no_pgqueuer:
        from _common import ensure_venv
        from postgres import PG_REQUIREMENTS, PG_VENV

        error = ensure_venv(PG_VENV, PG_REQUIREMENTS, lambda m: print(m, file=sys.stderr))
        if error:
            sys.exit(f"pgqueuer: {error}")
        argv = [str(PG_VENV / "bin" / "python"), me, "--child", "pgqueuer", *common]
        out.append(Contender("pgqueuer", [*argv, "--schema", "calls_pgqueuer"], env))
    return out


def report(players: list[Contender], args: argparse.Namespace) -> str:
    what = f"bulk adds of {args.batch}" if args.batch else "single adds"
    lines = [
        f"{what}: {args.turns} turns of {args.block} calls each, libraries in turn; "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end",
        "",
        "| library | median | p90 | client CPU per call (mean) |",
        "|---|---:|---:|---:|",
    ]
    for p in players:
        p90 = statistics.quantiles(p.wall, n=10)[-1]
        lines.append(
            f"| {p.name} | {statistics.median(p.wall) * 1e3:.3f} ms | {p90 * 1e3:.3f} ms | "
            f"{statistics.mean(p.cpu) * 1e6:.0f} µs |"
        )
    ours = players[0]
    lines += ["", "polyjobs / other (>1 means polyjobs is faster), per turn's medians:", ""]
    for p in players[1:]:
        ratios = [b / a for a, b in zip(ours.turns, p.turns, strict=True)]
        ahead = sum(r >= 1 for r in ratios)
        lines.append(
            f"- polyjobs/{p.name}: median {statistics.median(ratios):.2f}{TIMES}, "
            f"range {min(ratios):.2f}-{max(ratios):.2f}{TIMES}, "
            f"ahead in {ahead} of {len(ratios)} turns; of all calls' medians "
            f"{statistics.median(p.wall) / statistics.median(ours.wall):.2f}{TIMES}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch", type=int, default=0, help="bulk adds of this many (0: single)")
    parser.add_argument("--turns", type=int, default=0, help="default 60 (single), 20 (bulk)")
    parser.add_argument("--block", type=int, default=0, help="default 25 (single), 5 (bulk)")
    parser.add_argument("--baseline", default="", help="also this git revision of polyjobs")
    parser.add_argument("--no-pgqueuer", action="store_true")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--schema", default="calls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from _common import import_polyjobs_from_bench_source

        import_polyjobs_from_bench_source()
        asyncio.run(child(args.child, args.url, args.batch, args.schema))
        return
    args.turns = args.turns or (20 if args.batch else 60)
    args.block = args.block or (5 if args.batch else 25)
    if args.batch < 0 or args.turns < 2 or args.block < 1:
        sys.exit("--batch must be at least 0, --turns at least 2 and --block at least 1")
    tree, commit = "", ""
    if args.baseline:
        from _common import export_revision

        tree, commit = export_revision(args.baseline)
    players = contenders(args, tree, commit)
    try:
        for p in players:
            p.expect_ready()
        for k in range(args.turns):
            order = players[k % len(players) :] + players[: k % len(players)]
            for p in order:
                p.turn(args.block)
        print(report(players, args))
    finally:
        for p in players:
            p.stop()
        if tree:
            shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    main()
