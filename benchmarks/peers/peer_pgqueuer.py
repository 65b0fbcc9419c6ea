"""pgqueuer on PostgreSQL (benchmarks/postgres.py): its asyncpg driver on one connection per
process (the idiom of its docs), its schema installed by the first process that finds none,
an async no-op entrypoint; concurrency C is ``max_concurrent_tasks=C`` with ``batch_size=C/2``
(pgqueuer requires the cap to be at least twice the batch)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from _bench import REC, drive_async, job_data, parse_args
from pgqueuer import AsyncpgDriver, PgQueuer, Queries


async def main() -> None:
    args = parse_args()
    conn = await asyncpg.connect(args.url)
    driver = AsyncpgDriver(conn)
    queries = Queries(driver)
    if await conn.fetchval("SELECT to_regclass('pgqueuer')") is None:
        await queries.install()

    async def add_one() -> None:
        await queries.enqueue("noop", json.dumps(job_data()).encode())

    async def add_many(size: int) -> None:
        payloads: list[bytes | None] = [json.dumps(job_data()).encode() for _ in range(size)]
        await queries.enqueue(["noop"] * size, payloads, [0] * size)

    def start_worker(concurrency: int) -> Any:
        pgq = PgQueuer(driver)

        @pgq.entrypoint("noop")
        async def noop(job: Any) -> None:
            REC.hit(json.loads(job.payload))

        batch = max(1, concurrency // 2)
        return asyncio.ensure_future(pgq.run(batch_size=batch, max_concurrent_tasks=2 * batch))

    await drive_async(args, add_one, start_worker, add_many, "queries.enqueue(lists)")


if __name__ == "__main__":
    asyncio.run(main())
