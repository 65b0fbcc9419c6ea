"""asyncpg against psycopg 3 for what the PostgreSQL backend does most (its driver choice).

    python benchmarks/postgres_drivers.py [--url postgresql://postgres@127.0.0.1:5432/test]
        [--n 3000] [--rounds 3]

Three measurements per driver, interleaved (asyncpg, psycopg, asyncpg, ...) so machine load
hits both alike; each in a schema of its own that is dropped afterwards:

* insert: one single-row ``INSERT ... RETURNING`` per round trip (a job added one by one);
* take: one statement that moves 10 rows to "active" with ``FOR UPDATE SKIP LOCKED`` and
  returns them (a worker's fetch), repeated until the table is empty;
* notify: ``NOTIFY`` on one connection, the time until a ``LISTEN``ing connection's callback
  runs (a fetch's wake-up), 500 times, median and p99.

Both drivers use their fastest idiomatic setup: asyncpg's prepared statements (its default),
psycopg's ``AsyncConnection`` with the binary C extension (``psycopg[binary]``) and server-side
prepared statements after the first execution (``prepare_threshold=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg

SETUP = """
CREATE TABLE {s}.jobs (
    id bigserial PRIMARY KEY, queue text NOT NULL, state text NOT NULL, score double precision,
    data text NOT NULL, worker text, lease_until double precision
);
CREATE INDEX ON {s}.jobs (queue, state, score, id);
"""
INSERT = (
    "INSERT INTO {s}.jobs (queue, state, score, data) VALUES ($1, 'waiting', 0, $2) RETURNING id"
)
TAKE = """
UPDATE {s}.jobs SET state = 'active', worker = $1, lease_until = $2 WHERE id IN (
  SELECT id FROM {s}.jobs WHERE queue = $3 AND state = 'waiting' ORDER BY score, id LIMIT 10
  FOR UPDATE SKIP LOCKED) RETURNING id, data, state, worker, lease_until
"""


def _ps(sql: str) -> str:
    """asyncpg's $n placeholders as psycopg's %s (each statement uses them in order)."""
    for i in range(9, 0, -1):
        sql = sql.replace(f"${i}", "%s")
    return sql


class AsyncpgCase:
    name = "asyncpg"

    def __init__(self, url: str) -> None:
        self.url = url

    async def connect(self) -> Any:
        return await asyncpg.connect(self.url)

    async def execute(self, conn: Any, sql: str) -> None:
        await conn.execute(sql)

    async def insert(self, conn: Any, sql: str, *args: Any) -> Any:
        return await conn.fetchval(sql, *args)

    async def take(self, conn: Any, sql: str, *args: Any) -> list[Any]:
        return list(await conn.fetch(sql, *args))

    async def close(self, conn: Any) -> None:
        await conn.close()

    async def listen(self, conn: Any, channel: str, callback: Callable[[], None]) -> None:
        await conn.add_listener(channel, lambda *_: callback())

    def sql(self, text: str) -> str:
        return text


class PsycopgCase:
    name = "psycopg"

    def __init__(self, url: str) -> None:
        self.url = url
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> Any:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        conn.prepare_threshold = 0
        return conn

    async def execute(self, conn: Any, sql: str) -> None:
        await conn.execute(sql)

    async def insert(self, conn: Any, sql: str, *args: Any) -> Any:
        cur = await conn.execute(sql, args)
        row = await cur.fetchone()
        return row[0]

    async def take(self, conn: Any, sql: str, *args: Any) -> list[Any]:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())

    async def close(self, conn: Any) -> None:
        for task in self._tasks:
            task.cancel()
        await conn.close()

    async def listen(self, conn: Any, channel: str, callback: Callable[[], None]) -> None:
        await conn.execute(f"LISTEN {channel}")

        async def pump() -> None:
            async for _ in conn.notifies():
                callback()

        self._tasks.append(asyncio.create_task(pump()))

    def sql(self, text: str) -> str:
        return _ps(text)


async def measure(case: Any, url: str, n: int) -> dict[str, float]:
    schema = f"drv_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    await admin.execute(SETUP.format(s=schema))
    out: dict[str, float] = {}
    conn = await case.connect()
    try:
        ins = case.sql(INSERT.format(s=schema))
        start = time.perf_counter()
        for i in range(n):
            await case.insert(conn, ins, "q", f'{{"i": {i}}}')
        out["insert/s"] = n / (time.perf_counter() - start)

        take = case.sql(TAKE.format(s=schema))
        start = time.perf_counter()
        taken = 0
        while True:
            rows = await case.take(conn, take, "w", time.time() + 30, "q")
            if not rows:
                break
            taken += len(rows)
        out["take rows/s"] = taken / (time.perf_counter() - start)

        out.update(await notify_latency(case, schema))
    finally:
        await case.close(conn)
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    return out


async def notify_latency(case: Any, schema: str, count: int = 500) -> dict[str, float]:
    listener = await case.connect()
    sender = await case.connect()
    arrived = asyncio.Event()
    got: list[float] = []

    def callback() -> None:
        got.append(time.perf_counter())
        arrived.set()

    channel = f"{schema}_wake"
    await case.listen(listener, channel, callback)
    samples = []
    try:
        for _ in range(count):
            arrived.clear()
            sent = time.perf_counter()
            await case.execute(sender, f"NOTIFY {channel}")
            await asyncio.wait_for(arrived.wait(), 5)
            samples.append((got[-1] - sent) * 1000)
    finally:
        await case.close(listener)
        await case.close(sender)
    samples.sort()
    return {
        "notify p50 ms": statistics.median(samples),
        "notify p99 ms": samples[int(0.99 * len(samples)) - 1],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases: list[Any] = [AsyncpgCase(args.url), PsycopgCase(args.url)]
    results: dict[str, list[dict[str, float]]] = {c.name: [] for c in cases}
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, n={args.n}")
    for r in range(args.rounds):
        for case in cases:
            got = await measure(case, args.url, args.n)
            results[case.name].append(got)
            cells = ", ".join(f"{k} {v:,.2f}" for k, v in got.items())
            print(f"round {r + 1} {case.name:8} {cells}", flush=True)
    print("\nmedian over rounds:")
    keys = list(results["asyncpg"][0])
    print("| driver | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, runs in results.items():
        cells = " | ".join(f"{statistics.median(r[k] for r in runs):,.2f}" for k in keys)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    asyncio.run(main())
