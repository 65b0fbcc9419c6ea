"""What an add costs the server: polyjobs and pgqueuer on a private PostgreSQL cluster with
``pg_stat_statements``, each in a fresh database (as ``benchmarks/postgres.py`` gives them).

    python benchmarks/postgres_statements.py                  # 2,000 single adds, 20 x 500
    python benchmarks/postgres_statements.py --singles 500 --batches 10 --rounds 3

For single adds and for bulk adds of ``--batch``: the client's wall time per call (median;
it includes the commit, which ``pg_stat_statements`` does not), the statements that took the
server's time (top-level calls and those inside functions: ``track=all``) with their mean
execution time and WAL bytes per call, and the WAL written per job (the server's WAL position
before and after). The two libraries alternate round by round. pgqueuer is imported from
``benchmarks/.peers-postgres`` (made by ``benchmarks/postgres.py``), so this runs under the
project's Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from postgres import PG_VENV, Cluster  # noqa: E402

TOP = (
    "SELECT calls, mean_exec_time, wal_bytes, "
    "left(regexp_replace(query, '\\s+', ' ', 'g'), 78) AS query FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) "
    "AND query NOT LIKE '%pg_stat%' AND query NOT LIKE '%typeinfo_tree%' "
    "ORDER BY total_exec_time DESC LIMIT $2"
)

Adder = Callable[[int], Awaitable[Any]]  # 0: one single add; k: a bulk add of k jobs


async def polyjobs_adder(url: str) -> tuple[Adder, Callable[[], Awaitable[None]]]:
    from polyjobs import Queue, open_backend

    context = open_backend(url)
    queue = Queue("bench", await context.__aenter__())

    async def add(k: int) -> Any:
        if k:
            return await queue.add_bulk([("noop", {"t": time.time()}) for _ in range(k)])
        return await queue.add("noop", {"t": time.time()})

    async def close() -> None:
        await context.__aexit__(None, None, None)

    return add, close


async def pgqueuer_adder(url: str) -> tuple[Adder, Callable[[], Awaitable[None]]]:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(conn))
    await queries.install()

    async def add(k: int) -> Any:
        if k:
            payloads: list[bytes | None] = [
                json.dumps({"t": time.time()}).encode() for _ in range(k)
            ]
            return await queries.enqueue(["noop"] * k, payloads, [0] * k)
        return await queries.enqueue("noop", json.dumps({"t": time.time()}).encode())

    return add, conn.close


async def measure(cluster: Cluster, name: str, args: argparse.Namespace, admin: Any) -> list[str]:
    database = f"stmt_{name}"
    url = cluster.fresh(database)
    add, close = await (polyjobs_adder if name == "polyjobs" else pgqueuer_adder)(url)
    lines = []
    try:
        for _ in range(20):  # warm up: statements prepared and planned, functions compiled
            await add(0)
        await add(args.batch)
        for what, k, calls in [
            ("single adds", 0, args.singles),
            (f"bulk adds of {args.batch}", args.batch, args.batches),
        ]:
            await admin.execute("SELECT pg_stat_statements_reset()")
            lsn = await admin.fetchval("SELECT pg_current_wal_lsn()")
            spent = []
            for _ in range(calls):
                start = time.perf_counter()
                await add(k)
                spent.append(time.perf_counter() - start)
            wal = await admin.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn)
            per_job = float(wal) / (calls * max(k, 1))
            lines.append(
                f"{name}, {calls} {what}: {statistics.median(spent) * 1e3:.3f} ms a call "
                f"(client, median), WAL {per_job:.0f} B a job"
            )
            for row in await admin.fetch(TOP, database, args.top):
                wal_call = int(row["wal_bytes"]) // max(row["calls"], 1)
                lines.append(
                    f"  {row['calls']:6d} x {row['mean_exec_time']:7.3f} ms  WAL {wal_call:7d} B"
                    f"  {row['query']}"
                )
    finally:
        await close()
        cluster.sql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return lines


async def run(args: argparse.Namespace) -> None:
    import asyncpg

    cluster = Cluster()
    cluster.start("shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all")
    try:
        admin = await asyncpg.connect(cluster.url("postgres"))
        await admin.execute("CREATE EXTENSION pg_stat_statements")
        print(f"PostgreSQL {cluster.version}, private cluster, default settings")
        names = ["polyjobs", "pgqueuer"]
        for k in range(args.rounds):
            for name in names[k % 2 :] + names[: k % 2]:
                print(f"\nround {k + 1}: " + "\n".join(await measure(cluster, name, args, admin)))
        await admin.close()
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top", type=int, default=6, help="statements shown per measurement")
    args = parser.parse_args()
    found = sorted(PG_VENV.glob("lib/python*/site-packages"))
    if not found:
        sys.exit(f"no {PG_VENV.name}: run benchmarks/postgres.py --only pgqueuer once first")
    sys.path.append(str(found[-1]))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
