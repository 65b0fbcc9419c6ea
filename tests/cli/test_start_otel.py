"""`polyjobs start --otel`: a job added in this process with a trace context is run by another
process (the CLI), whose span continues the same trace."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from polyjobs import Queue, open_backend
from polyjobs.otel import OtelTelemetry
from tests.cli.support import polyjobs


def test_a_trace_crosses_into_the_start_process(tmp_path: Path) -> None:
    home = tmp_path / "state"
    spans_file = tmp_path / "spans.jsonl"
    env = {
        "POLYJOBS_HOME": str(home),
        "POLYJOBS_BACKEND": f"sqlite:///{tmp_path / 'jobs.db'}",
        "POLYJOBS_PLUGINS": "polyjobs_test_plugin,otel_test_plugin",
        "PYTHONPATH": str(Path(__file__).parent),
        "POLYJOBS_TEST_SPANS": str(spans_file),
    }
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def add() -> str:
        async with open_backend(env["POLYJOBS_BACKEND"]) as backend:
            queue = Queue("test-echo", backend, telemetry=OtelTelemetry(tracer_provider=provider))
            return (await queue.add("shout", {"text": "hi"})).id

    job_id = asyncio.run(add())
    done = polyjobs(env, "start", "-q", "echo", "--no-schedule", "--burst", "--otel")
    assert done.returncode == 0, done.stderr
    (send,) = exporter.get_finished_spans()
    runs = [json.loads(line) for line in spans_file.read_text().splitlines()]
    (run,) = [r for r in runs if r["name"] == "process test-echo"]
    assert run["trace_id"] == format(send.context.trace_id, "032x")
    assert run["parent_id"] == format(send.context.span_id, "016x")
    assert run["kind"] == "CONSUMER"
    assert run["attributes"]["messaging.message.id"] == job_id
