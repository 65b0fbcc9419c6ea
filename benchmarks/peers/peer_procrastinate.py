"""Procrastinate on PostgreSQL (benchmarks/postgres.py): ``PsycopgConnector``, its schema
applied by the first process that finds none, an async no-op task, ``run_worker_async`` at
concurrency C with LISTEN/NOTIFY on (its default); finished jobs kept (its default)."""

from __future__ import annotations

import asyncio
from typing import Any

from _bench import REC, drive_async, job_data, parse_args
from procrastinate import App, PsycopgConnector


async def main() -> None:
    args = parse_args()
    app = App(connector=PsycopgConnector(conninfo=args.url))

    @app.task(name="noop")
    async def noop(t: float) -> None:
        REC.hit({"t": t})

    async with app.open_async():
        found = await app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS ok"
        )
        if not found["ok"]:
            await app.schema_manager.apply_schema_async()

        async def add_one() -> None:
            await noop.defer_async(**job_data())

        async def add_many(size: int) -> None:
            await noop.batch_defer_async(*[job_data() for _ in range(size)])

        def start_worker(concurrency: int) -> Any:
            return asyncio.ensure_future(
                app.run_worker_async(
                    concurrency=concurrency, wait=True, install_signal_handlers=False
                )
            )

        await drive_async(args, add_one, start_worker, add_many, "batch_defer_async")


if __name__ == "__main__":
    asyncio.run(main())
