"""Prometheus metrics at /metrics: gauges, totals counted once, the processing-time histogram."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from polyjobs import Job, Queue, Worker
from polyjobs.backend import Backend

if TYPE_CHECKING:
    from tests.board.conftest import ClientFactory, Seeder


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def ok(job: Job) -> int:
    return 1


async def test_metrics_of_every_queue(
    backend: Backend, make_client: ClientFactory, seed: Seeder
) -> None:
    await seed()
    client = await make_client()
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert value(found, "polyjobs_jobs", queue="emails", state="failed") == 1
    assert value(found, "polyjobs_jobs", queue="emails", state="delayed") == 1
    assert value(found, "polyjobs_jobs", queue="reports", state="waiting") == 1
    assert value(found, "polyjobs_queue_paused", queue="emails") == 0
    assert value(found, "polyjobs_workers_online", queue="emails") == 0
    assert value(found, "polyjobs_jobs_completed_total", queue="emails") == 1
    assert value(found, "polyjobs_jobs_failed_total", queue="emails") == 1
    count = "polyjobs_job_processing_seconds_count"
    assert value(found, count, queue="emails", state="completed") == 1
    inf = value(
        found,
        "polyjobs_job_processing_seconds_bucket",
        queue="emails",
        state="completed",
        le="+Inf",
    )
    assert inf == 1


async def test_totals_count_each_finished_job_once(
    backend: Backend, make_client: ClientFactory
) -> None:
    queue = Queue("counted", backend)
    await queue.add_bulk([("job", {}) for _ in range(3)])
    await Worker("counted", ok, backend).run(burst=True)
    client = await make_client()
    first = samples((await client.get("/metrics")).text)
    assert value(first, "polyjobs_jobs_completed_total", queue="counted") == 3
    again = samples((await client.get("/metrics")).text)
    assert value(again, "polyjobs_jobs_completed_total", queue="counted") == 3

    await queue.add_bulk([("job", {}) for _ in range(2)])
    await Worker("counted", ok, backend).run(burst=True)
    await queue.clean("completed", 0, 1)  # retention trims one: it was seen or it was not
    later = samples((await client.get("/metrics")).text)
    assert value(later, "polyjobs_jobs_completed_total", queue="counted") in (4, 5)
    assert value(later, "polyjobs_jobs", queue="counted", state="completed") == 4
    hist = value(later, "polyjobs_job_processing_seconds_count", queue="counted", state="completed")
    assert hist == value(later, "polyjobs_jobs_completed_total", queue="counted")


async def test_each_app_has_its_own_registry(
    backend: Backend, make_client: ClientFactory, seed: Seeder
) -> None:
    await seed()
    one, two = await make_client(), await make_client()
    assert (await one.get("/metrics")).text.count("# TYPE polyjobs_jobs gauge") == 1
    assert (await two.get("/metrics")).text.count("# TYPE polyjobs_jobs gauge") == 1
