"""OpenTelemetry tracing: a span per add and per job run, the trace context carried in the
job, so a chain of queues is one trace on every backend (in-memory span exporter)."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from polyjobs import Job, Queue, QueueSpec, Runtime, Worker, open_backend
from polyjobs.backend import Backend
from polyjobs.otel import OtelTelemetry, _parse_traceparent
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


async def test_a_run_whose_add_was_not_sampled_starts_no_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))  # every new trace dropped
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = OtelTelemetry(tracer_provider=provider)
    started: list[str] = []

    def counted(start: Any) -> Any:
        def counting(name: str, *args: Any, **kwargs: Any) -> Any:
            started.append(name)
            return start(name, *args, **kwargs)

        return counting

    for method in ("start_span", "start_as_current_span"):
        monkeypatch.setattr(telemetry.tracer, method, counted(getattr(telemetry.tracer, method)))
    seen: list[trace.SpanContext] = []

    async def work(job: Job) -> None:
        seen.append(trace.get_current_span().get_span_context())
        if job.name == "first":
            await job.context.add("second", {})

    async with open_backend("memory://") as backend:
        queue = Queue("t-unsampled", backend, telemetry=telemetry)
        first = await queue.add("first", {})
        worker = Worker("t-unsampled", work, backend, telemetry=telemetry, context=queue)
        await worker.run(burst=True)
        stored = await backend.get_job("t-unsampled", first.id)
        jobs = await queue.jobs("completed")
    provider.shutdown()
    # the first add (a new trace) asked the tracer; its decision travels in the job, so the
    # runs and the add inside an unsampled run asked the sampler alone
    assert started == ["send t-unsampled"]
    assert exporter.get_finished_spans() == ()
    assert stored is not None
    traceparent = stored.opts[TRACE_KEY]["traceparent"]
    trace_id = int(traceparent.split("-")[1], 16)
    assert int(traceparent.split("-")[3], 16) & 1 == 0  # not sampled
    # each run is in its add's trace, under a non-recording span, and so is what it adds
    assert len(seen) == 2 and all(c.trace_id == trace_id for c in seen)
    assert all(c.is_valid and not c.trace_flags.sampled for c in seen)
    second = next(j for j in jobs if j.name == "second")
    assert second.opts[TRACE_KEY]["traceparent"].split("-")[1] == f"{trace_id:032x}"


async def test_a_sampled_add_still_gets_its_run_span_under_a_ratio_sampler() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = OtelTelemetry(tracer_provider=provider)
    async with open_backend("memory://") as backend:
        queue = Queue("t-ratio", backend, telemetry=telemetry)
        for _ in range(40):
            await queue.add("x", {})
        await Worker("t-ratio", noop_async, backend, telemetry=telemetry).run(burst=True)
    provider.shutdown()
    finished = exporter.get_finished_spans()
    sends = {s.context.span_id for s in finished if s.name == "send t-ratio"}
    runs = [s for s in finished if s.name == "process t-ratio"]
    assert 0 < len(sends) < 40  # some traces sampled, some not
    # exactly the sampled adds have a run span, each under its own add
    assert sorted(r.parent.span_id for r in runs if r.parent) == sorted(sends)
    assert len(runs) == len(sends)


async def noop_async(job: Job) -> None:
    return None


class DropAll(Sampler):
    """A sampler of the application's own (not the SDK's): asked every time."""

    def __init__(self) -> None:
        self.asked = 0

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self.asked += 1
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "DropAll"


@pytest.mark.parametrize(
    "sampler",
    [
        ParentBased(TraceIdRatioBased(0.0)),  # the usual one: known to drop, never asked
        ParentBased(ALWAYS_OFF, remote_parent_not_sampled=TraceIdRatioBased(0.0)),  # asked
        DropAll(),  # asked for every run
    ],
    ids=["parent-based", "built-in", "own"],
)
async def test_the_unsampled_runs_of_one_bulk_add_stay_in_its_trace(sampler: Sampler) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = OtelTelemetry(tracer_provider=provider)
    seen: list[tuple[str, trace.SpanContext]] = []

    async def work(job: Job) -> None:
        seen.append(
            (job.opts[TRACE_KEY]["traceparent"], trace.get_current_span().get_span_context())
        )

    async with open_backend("memory://") as backend:
        queue = Queue("t-siblings", backend, telemetry=telemetry)
        await queue.add_bulk([("a", i) for i in range(3)])
        await queue.add_bulk([("b", i) for i in range(3)])
        await Worker("t-siblings", work, backend, telemetry=telemetry).run(burst=True)
    assert exporter.get_finished_spans() == ()
    assert len(seen) == 6 and len({parent for parent, _ in seen}) == 2  # two adds
    sdk = provider.get_tracer("sdk")
    for traceparent, context in seen:
        # what the SDK itself makes of a span it drops under that parent
        parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        made = sdk.start_span("x", parent, SpanKind.CONSUMER).get_span_context()
        assert (context.trace_id, context.trace_flags, context.trace_state) == (
            made.trace_id,
            made.trace_flags,
            made.trace_state,
        )
        assert context.is_valid and not context.trace_flags.sampled and not context.is_remote
        assert context.span_id != trace.get_current_span(parent).get_span_context().span_id
    if isinstance(sampler, DropAll):  # 2 adds, 6 runs (then the SDK's own 6 calls above)
        assert sampler.asked == 2 + 6 + 6
    provider.shutdown()


_HEX = "0123456789abcdefABCDEF"


def _hex(size: int) -> st.SearchStrategy[str]:
    """Mostly valid lowercase hex of ``size``; else zeros, upper case, a digit more or less."""
    valid = st.text(_HEX[:16], min_size=size, max_size=size)
    return valid | valid | st.just("0" * size) | st.text(_HEX, min_size=size - 1, max_size=size + 1)


@given(
    version=st.sampled_from(["00", "00", "01", "ff", "0g"]),
    trace_id=_hex(32),
    span_id=_hex(16),
    flags=_hex(2),
    around=st.sampled_from(["", "", " ", "\t", "-x"]),
)
def test_the_quick_traceparent_reading_agrees_with_the_w3c_propagator(
    version: str, trace_id: str, span_id: str, flags: str, around: str
) -> None:
    traceparent = f"{version}-{trace_id}-{span_id}-{flags}{around}"
    sdk = trace.get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    ).get_span_context()
    quick = _parse_traceparent(traceparent)
    strict = re.fullmatch("00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", traceparent)
    if quick is None:  # left to the propagator: what it reads is not a plain version 00
        assert not (strict and sdk.is_valid)
    else:
        assert trace.get_current_span(quick).get_span_context() == sdk
        assert sdk.is_valid and sdk.is_remote and len(quick) == 1


async def test_unsampled_runs_keep_the_baggage_and_other_propagators_work() -> None:
    """A carrier beyond a lone traceparent (baggage) and a propagator that is not W3C's go
    through the propagator: the unsampled runs stay in their add's trace either way."""
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    seen: list[tuple[str, int, object]] = []

    async def work(job: Job) -> None:
        span = trace.get_current_span().get_span_context()
        seen.append((job.name, span.trace_id, baggage.get_baggage("tenant")))

    baggage_first = CompositePropagator([W3CBaggagePropagator(), TraceContextTextMapPropagator()])
    for name, propagator in (("w3c", None), ("baggage-first", baggage_first)):
        telemetry = OtelTelemetry(tracer_provider=provider, propagator=propagator)
        async with open_backend("memory://") as backend:
            queue = Queue("t-carrier", backend, telemetry=telemetry)
            token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
            try:
                await queue.add_bulk([(name, 1), (name, 2)])
            finally:
                otel_context.detach(token)
            added = await queue.jobs("waiting")
            await Worker("t-carrier", work, backend, telemetry=telemetry).run(burst=True)
        carrier = added[0].opts[TRACE_KEY]
        assert set(carrier) == {"traceparent", "baggage"}
        trace_id = int(carrier["traceparent"].split("-")[1], 16)
        assert [s for s in seen if s[0] == name] == [(name, trace_id, "acme")] * 2
    provider.shutdown()


async def test_each_traced_job_runs_with_its_own_options(
    backend: Backend, spans: tuple[OtelTelemetry, InMemorySpanExporter, TracerProvider]
) -> None:
    """The worker reuses the last job's parsed options when they are equal, with or without
    the trace context: jobs of one add share their carrier, not always their options."""
    telemetry = spans[0]

    async def fail(job: Job) -> None:
        raise RuntimeError("no")

    queue = Queue("t-options", backend, telemetry=telemetry)
    for _ in range(2):  # two carriers, the same options
        await queue.add_bulk([("x", i, {"attempts": 3} if i % 2 else {}) for i in range(6)])
    await queue.add("x", 7, attempts=3)
    await Worker("t-options", fail, backend, telemetry=telemetry).run(burst=True)
    failed = await queue.jobs("failed")
    assert len(failed) == 13
    assert all(TRACE_KEY in job.opts for job in failed)
    assert sorted(job.attempts_made for job in failed) == [1] * 6 + [3] * 7
    assert all(job.attempts_made == (3 if job.data % 2 else 1) for job in failed)


@pytest.mark.parametrize("threaded", [False, True], ids=["async", "thread"])
async def test_an_unsampled_run_s_context_stays_in_its_job(threaded: bool) -> None:
    """A run the sampler drops makes its context current in the job's own task, with nothing
    around the processor: the run sees it (in a thread too), the worker's events and the code
    around the worker don't, nor does a job added untraced after it."""
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    telemetry = OtelTelemetry(tracer_provider=provider)
    seen: dict[str, trace.SpanContext] = {}
    heard: list[trace.SpanContext] = []

    def work(job: Job) -> None:
        seen[job.name] = trace.get_current_span().get_span_context()

    async def work_async(job: Job) -> None:
        work(job)

    async with open_backend("memory://") as backend:
        traced = await Queue("t-scope", backend, telemetry=telemetry).add_bulk([("a", 1)] * 2)
        await Queue("t-scope", backend).add("untraced", {})
        processor = work if threaded else work_async
        worker = Worker("t-scope", processor, backend, telemetry=telemetry, concurrency=1)
        worker.on("completed", lambda job, result: heard.append(current_context()))
        ask = telemetry.processing
        assert contextvars.copy_context().run(ask, "t-scope", traced[0]) is None  # no scope
        await worker.run(burst=True)
    provider.shutdown()
    trace_id = int(traced[0].opts[TRACE_KEY]["traceparent"].split("-")[1], 16)
    assert seen["a"].trace_id == trace_id and not seen["a"].trace_flags.sampled
    assert seen["untraced"].trace_id != trace_id
    assert len(heard) == 3 and not any(context.is_valid for context in heard)
    assert not current_context().is_valid


def current_context() -> trace.SpanContext:
    return trace.get_current_span().get_span_context()


async def test_a_sampled_run_sees_its_carrier_s_baggage_and_its_own_span(
    spans: tuple[OtelTelemetry, InMemorySpanExporter, TracerProvider],
) -> None:
    """A sampled run has the context its job carries made current, with its span in it: the
    baggage of the code that added the job too (as an unsampled run has), not the worker's."""
    telemetry, exporter, _ = spans
    seen: list[tuple[int, object]] = []

    async def work(job: Job) -> None:
        seen.append(
            (trace.get_current_span().get_span_context().span_id, baggage.get_baggage("tenant"))
        )

    async with open_backend("memory://") as backend:
        queue = Queue("t-bag", backend, telemetry=telemetry)
        token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            await queue.add_bulk([("a", 1), ("b", 2)])
        finally:
            otel_context.detach(token)
        worker_token = otel_context.attach(baggage.set_baggage("tenant", "worker's"))
        try:
            await Worker("t-bag", work, backend, telemetry=telemetry).run(burst=True)
        finally:
            otel_context.detach(worker_token)
    runs = [s for s in exporter.get_finished_spans() if s.name == "process t-bag"]
    assert sorted(seen) == sorted((run.context.span_id, "acme") for run in runs)
    assert len(runs) == 2 and otel_context.get_current() == {}


async def test_a_timed_out_run_is_an_error_span_and_a_failed_one_says_why(
    spans: tuple[OtelTelemetry, InMemorySpanExporter, TracerProvider],
) -> None:
    telemetry, exporter, _ = spans

    async def work(job: Job) -> None:
        if job.name == "slow":
            await asyncio.sleep(5)
        raise ValueError("bad price")

    async with open_backend("memory://") as backend:
        queue = Queue("t-err", backend, telemetry=telemetry)
        await queue.add("slow", {}, timeout=0.05)
        await queue.add("bad", {})
        await Worker("t-err", work, backend, telemetry=telemetry).run(burst=True)
    runs = {
        s.attributes["polyjobs.job.name"]: s
        for s in exporter.get_finished_spans()
        if s.name == "process t-err" and s.attributes
    }
    assert runs["slow"].status.status_code == StatusCode.ERROR
    assert runs["slow"].status.description == "cancelled (timeout or shutdown)"
    assert runs["bad"].status.status_code == StatusCode.ERROR
    assert runs["bad"].status.description == "ValueError: bad price"
    assert [e.attributes["exception.message"] for e in runs["bad"].events if e.attributes] == [
        "bad price"
    ]
    assert not [e for e in runs["slow"].events if e.name == "exception"]
