"""OpenTelemetry tracing: a span per add and per job run, the trace context carried in the
job, so a chain of queues is one trace on every backend (in-memory span exporter)."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from polyjobs import Job, Queue, QueueSpec, Runtime, Worker, open_backend
from polyjobs.backend import Backend
from polyjobs.otel import OtelTelemetry
from polyjobs.telemetry import TRACE_KEY


@pytest.fixture
def spans() -> Iterator[tuple[OtelTelemetry, InMemorySpanExporter, TracerProvider]]:
    """A telemetry on a tracer provider of its own (never the global one) and its spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OtelTelemetry(tracer_provider=provider), exporter, provider
    provider.shutdown()


def _redis_up() -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    prefix = f"tracetest-{uuid.uuid4().hex[:8]}"
    if request.param == "redis" and not _redis_up():
        if os.environ.get("CI"):
            pytest.fail("Redis is not answering on 127.0.0.1:6379 (CI requires it)")
        pytest.skip("no Redis on 127.0.0.1:6379")
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path / 'trace.db'}",
        "redis": f"redis://127.0.0.1:6379/0?prefix={prefix}",
    }[request.param]
    try:
        async with open_backend(url) as opened:
            yield opened
    finally:
        if request.param == "redis":
            client = redis.Redis(host="127.0.0.1", port=6379)
            keys = list(client.scan_iter(f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


def by_name(found: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in found}


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_a_chain_of_queues_is_one_trace(
    backend: Backend, spans: tuple[OtelTelemetry, InMemorySpanExporter, TracerProvider]
) -> None:
    telemetry, exporter, _ = spans

    async def ingest(job: Job) -> str:
        await job.context.queue("t-analysis").add("analyse", {"trade": job.data["trade"]})
        return "sent"

    async def analyse(job: Job) -> str:
        await job.context.queue("t-alerts").add("deliver", {"trade": job.data["trade"]})
        return "alert"

    async def deliver(job: Job) -> str:
        return "delivered"

    specs = [
        QueueSpec("t-ingest", ingest),
        QueueSpec("t-analysis", analyse),
        QueueSpec("t-alerts", deliver),
    ]
    runtime = Runtime(specs, backend, telemetry=telemetry, schedule=False)
    added = await runtime.queue("t-ingest").add("poll", {"trade": "0xabc"})
    stored = await backend.get_job("t-ingest", added.id)
    assert stored is not None and "traceparent" in stored.opts[TRACE_KEY]
    await runtime.start(burst=True)
    await asyncio.wait_for(runtime.wait(), 20)
    await runtime.stop(1)

    found = by_name(exporter.get_finished_spans())
    chain = [
        "send t-ingest",
        "process t-ingest",
        "send t-analysis",
        "process t-analysis",
        "send t-alerts",
        "process t-alerts",
    ]
    assert set(chain) <= set(found)
    assert len({found[name].context.trace_id for name in chain}) == 1
    assert parent_of(found["send t-ingest"]) is None
    for parent, child in itertools.pairwise(chain):
        assert parent_of(found[child]) == found[parent].context.span_id, child
    send, process = found["send t-analysis"], found["process t-analysis"]
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert send.attributes is not None and process.attributes is not None
    assert send.attributes["messaging.system"] == "polyjobs"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.destination.name"] == "t-analysis"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == "t-analysis"
    assert process.attributes["messaging.message.id"] == send.attributes["messaging.message.id"]
    assert process.attributes["polyjobs.job.attempt"] == 1
    assert process.status.status_code != StatusCode.ERROR


async def test_a_failing_run_is_an_error_span_and_an_untraced_job_starts_a_trace(
    spans: tuple[OtelTelemetry, InMemorySpanExporter, TracerProvider],
) -> None:
    telemetry, exporter, _ = spans

    async def boom(job: Job) -> None:
        raise RuntimeError("analysis failed")

    async with open_backend("memory://") as backend:
        await Queue("t-fail", backend).add("x", {})  # added without telemetry
        await Queue("t-fail", backend, telemetry=telemetry).add_bulk([("y", {}), ("z", {})])
        await Worker("t-fail", boom, backend, telemetry=telemetry).run(burst=True)

    finished = exporter.get_finished_spans()
    sends = [s for s in finished if s.name == "send t-fail"]
    runs = [s for s in finished if s.name == "process t-fail"]
    assert len(sends) == 1 and len(runs) == 3
    assert sends[0].attributes is not None
    assert sends[0].attributes["messaging.batch.message_count"] == 2
    assert all(run.status.status_code == StatusCode.ERROR for run in runs)
    assert all(any(e.name == "exception" for e in run.events) for run in runs)
    roots = [run for run in runs if run.parent is None]
    assert len(roots) == 1  # the job added untraced
    traced = [run for run in runs if run.parent is not None]
    assert {run.parent.span_id for run in traced if run.parent} == {sends[0].context.span_id}


async def test_a_threaded_processor_runs_inside_its_job_span(
    spans: tuple[OtelTelemetry, InMemorySpanExporter, TracerProvider],
) -> None:
    telemetry, exporter, provider = spans
    tracer = provider.get_tracer("app")

    def work(job: Job) -> int:
        with tracer.start_as_current_span("app work"):
            return 1

    async with open_backend("memory://") as backend:
        await Queue("t-sync", backend, telemetry=telemetry).add("x", {})
        await Worker("t-sync", work, backend, telemetry=telemetry).run(burst=True)
    found = by_name(exporter.get_finished_spans())
    assert parent_of(found["app work"]) == found["process t-sync"].context.span_id


async def test_without_telemetry_nothing_is_added_to_the_job() -> None:
    async with open_backend("memory://") as backend:
        job = await Queue("t-plain", backend).add("x", {})
        stored = await backend.get_job("t-plain", job.id)
    assert stored is not None and TRACE_KEY not in stored.opts
