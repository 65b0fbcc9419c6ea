"""Prometheus metrics from where the work is: the exposition parsed, scraped over loopback
HTTP while jobs run, what the workers of this process did, and a backend that is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from polyjobs import Job, PluginHost, Queue, RateLimitError, Worker, open_backend
from polyjobs.backend import Backend
from polyjobs.backends.redis import RedisBackend
from polyjobs.prometheus import JobMetrics, MetricsExporter, bind

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@contextlib.asynccontextmanager
async def serving(exporter: MetricsExporter) -> AsyncIterator[str]:
    """The exporter on a free loopback port; yields its /metrics URL."""
    sock = bind("127.0.0.1", 0)
    started = asyncio.Event()
    task = asyncio.create_task(exporter.serve(sock=sock, started=started))
    await asyncio.wait_for(started.wait(), 5)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'm.db'}"
    async with open_backend(url) as opened:
        yield opened


async def test_a_scrape_while_jobs_run_and_after(backend: Backend) -> None:
    jobs = JobMetrics()
    host = PluginHost.load(builtins=(), entry_points=False, extra=[jobs])
    release = asyncio.Event()
    running = 0
    all_running = asyncio.Event()

    async def work(job: Job) -> str:
        nonlocal running
        running += 1
        if running == 3:
            all_running.set()
        await release.wait()
        if job.data.get("fail"):
            raise RuntimeError("no")
        return "ok"

    queue = Queue("mail", backend)
    await queue.add_bulk([("send", {}), ("send", {}), ("send", {"fail": True})])
    idle = Queue("idle", backend)
    await idle.add("now", {})
    await idle.add("later", {}, delay=3600)
    worker = Worker("mail", work, backend, concurrency=3, plugins=host, heartbeat_interval=0.05)

    async def names() -> list[str]:
        return ["mail", "idle"]

    exporter = MetricsExporter(backend, names, jobs)
    async with serving(exporter) as url, httpx.AsyncClient() as http:
        run = asyncio.create_task(worker.run(burst=True))
        await asyncio.wait_for(all_running.wait(), 10)
        answer = await http.get(url)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        during = parse(answer.text)
        assert value(during, "polyjobs_backend_up") == 1
        assert value(during, "polyjobs_jobs", queue="mail", state="active") == 3
        assert value(during, "polyjobs_jobs", queue="idle", state="delayed") == 1
        assert value(during, "polyjobs_workers_online", queue="mail") == 1
        assert value(during, "polyjobs_jobs_completed_total", queue="mail") == 0
        assert value(during, "polyjobs_oldest_waiting_job_age_seconds", queue="mail") == 0
        assert value(during, "polyjobs_oldest_waiting_job_age_seconds", queue="idle") > 0
        assert value(during, "polyjobs_jobs", queue="idle", state="waiting") == 1

        release.set()
        await asyncio.wait_for(run, 10)
        after = parse((await http.get(url)).text)
    assert value(after, "polyjobs_jobs_completed_total", queue="mail") == 2
    assert value(after, "polyjobs_jobs_failed_total", queue="mail") == 1
    assert value(after, "polyjobs_jobs_retried_total", queue="mail") == 0
    assert value(after, "polyjobs_jobs", queue="mail", state="completed") == 2
    count = "polyjobs_job_processing_seconds_count"
    assert value(after, count, queue="mail", state="completed") == 2
    assert value(after, count, queue="mail", state="failed") == 1
    bucket = "polyjobs_job_processing_seconds_bucket"
    assert value(after, bucket, queue="mail", state="completed", le="+Inf") == 2
    assert value(after, "polyjobs_job_processing_seconds_sum", queue="mail", state="completed") > 0


async def test_retries_and_rate_limit_holds_are_counted() -> None:
    jobs = JobMetrics()
    host = PluginHost.load(builtins=(), entry_points=False, extra=[jobs])
    calls = 0

    async def flaky(job: Job) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimitError(0.01)
        if calls == 2:
            raise RuntimeError("once more")
        return "ok"

    async with open_backend("memory://") as backend:
        await Queue("api", backend).add("call", {}, attempts=2)
        await Worker("api", flaky, backend, plugins=host).run(burst=True)

        async def names() -> list[str]:
            return ["api"]

        found = parse((await MetricsExporter(backend, names, jobs).render()).decode())
    assert value(found, "polyjobs_rate_limit_holds_total", queue="api") == 1
    # the held attempt goes back to waiting too: a retry without an attempt counted
    assert value(found, "polyjobs_jobs_retried_total", queue="api") == 2
    assert value(found, "polyjobs_jobs_completed_total", queue="api") == 1


async def test_a_backend_that_is_down_reads_as_up_0_with_this_process_counts() -> None:
    jobs = JobMetrics()
    jobs.polyjobs_job_event("mail", "completed", "1", {"duration": 0.2})
    never_opened = RedisBackend("redis://:s3cret-pass@127.0.0.1:1/0")

    async def names() -> list[str]:
        return ["mail"]

    exporter = MetricsExporter(never_opened, names, jobs)
    text = (await exporter.render()).decode()
    found = parse(text)
    assert value(found, "polyjobs_backend_up") == 0
    assert value(found, "polyjobs_jobs_completed_total", queue="mail") == 1
    assert (
        value(found, "polyjobs_job_processing_seconds_sum", queue="mail", state="completed") == 0.2
    )
    assert "s3cret" not in text


async def test_only_get_metrics_is_answered() -> None:
    async with open_backend("memory://") as backend:

        async def names() -> list[str]:
            return []

        async with serving(MetricsExporter(backend, names)) as url, httpx.AsyncClient() as http:
            assert (await http.get(url.replace("/metrics", "/"))).status_code == 404
            assert (await http.post(url)).status_code == 405
            head = await http.head(url)
            assert head.status_code == 200 and head.content == b""
            assert "polyjobs_backend_up 1.0" in (await http.get(url + "?x=1")).text
