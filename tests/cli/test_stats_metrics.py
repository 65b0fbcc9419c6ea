"""``polyjobs stats`` reads the metrics the backend keeps: right in a new process (after any
restart), whoever ran the jobs, however many retained jobs were trimmed."""

from __future__ import annotations

import asyncio
import json
import time

from polyjobs import Job, Queue, UnrecoverableError, Worker, open_backend
from polyjobs.backend import MinuteMetrics, minute_of
from polyjobs.stats import _last_minute
from tests.cli.support import backend_url, polyjobs


def _run_jobs(url: str) -> None:
    """12 jobs of ~20 ms (3 fail) run by a worker that keeps none of them (retention 0)."""

    async def work(job: Job) -> None:
        await asyncio.sleep(0.02)
        if job.data % 4 == 0:
            raise UnrecoverableError("every fourth")

    async def go() -> None:
        async with open_backend(url) as backend:
            queue = Queue("metered", backend)
            await queue.add_bulk(
                [("m", i, {"remove_on_complete": True, "remove_on_fail": True}) for i in range(12)]
            )
            await Worker("metered", work, backend, concurrency=4).run(burst=True)

    asyncio.run(go())


def test_stats_reads_the_stored_metrics_in_a_new_process(cli_env: dict[str, str]) -> None:
    _run_jobs(backend_url(cli_env))
    # one job waiting keeps the queue listed (a queue without jobs, workers or schedules is not)
    added = polyjobs(cli_env, "enqueue", "metered", "--create", "--data", "0")
    assert added.returncode == 0, added.stderr
    done = polyjobs(cli_env, "stats", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = [r for r in json.loads(done.stdout) if r["queue"] == "metered"]
    # nothing retained, yet the counts are whole: they come from the stored metrics
    assert (row["completed"], row["failed"]) == (0, 0)
    assert (row["completed_last_hour"], row["failed_last_hour"]) == (9, 3)
    assert 0.015 <= row["avg_time_last_hour"] < 5
    assert row["completed_last_minute"] + row["failed_last_minute"] >= 1
    assert row["recent_capped"] is False
    wide = polyjobs({**cli_env, "COLUMNS": "200"}, "stats")
    assert wide.returncode == 0, wide.stderr
    header = next(line for line in wide.stdout.splitlines() if "queue" in line)
    assert "done/h" in header and "avg time" in header
    metered = next(line for line in wide.stdout.splitlines() if line.startswith("metered"))
    assert metered.split()[-3:-1] == ["9", "3"]


def test_the_last_minute_weighs_the_previous_minute_by_its_part_inside_60_s() -> None:
    now = minute_of(time.time()) + 15  # a quarter into the current minute
    minutes = [
        MinuteMetrics(now - 15 - 120, 100, 100),  # too old
        MinuteMetrics(now - 15 - 60, 40, 8),  # three quarters of it are inside the last 60 s
        MinuteMetrics(now - 15, 5, 1),
    ]
    assert _last_minute(minutes, now) == (35, 7)
