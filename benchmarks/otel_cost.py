"""What OpenTelemetry tracing costs a Redis worker: no-op jobs at concurrency 100, with and
without ``OtelTelemetry``, in alternating rounds (compare the ratio, not absolute rates).

    .venv/bin/python benchmarks/otel_cost.py [--jobs 10000] [--rounds 3]

The traced runs use the OpenTelemetry SDK with a ``BatchSpanProcessor`` and an exporter that
drops the spans (what an application pays; exporting over the network is the SDK's own thread):
``otel`` records every trace, ``otel-1%`` samples 1 % of them (``ParentBased(TraceIdRatioBased)``,
the usual production setting: the other runs get non-recording spans).
Jobs are added in bulk (500 per call; traced: one ``send`` span per call and the trace context
in every job), then one worker processes them all (traced: one ``process`` span per job).
Besides the rates it reports the process's CPU time per processed job (all threads, the span
exporter's included): on a shared, loaded machine the rates of 1-second runs swing by tens of
percent between rounds, the CPU per job much less.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from polyjobs import Queue, Worker
from polyjobs.backends.redis import RedisBackend
from polyjobs.otel import OtelTelemetry
from polyjobs.telemetry import Telemetry

QUEUE = "bench-otel"


class Dropping(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def _noop(job: Any) -> None:
    return None


async def one_round(
    backend: RedisBackend, jobs: int, concurrency: int, telemetry: Telemetry | None
) -> tuple[float, float, float]:
    """(bulk add jobs/s, processing jobs/s, this process's CPU µs per processed job)."""
    await backend.obliterate(QUEUE)
    queue = Queue(QUEUE, backend, telemetry=telemetry)
    start = time.perf_counter()
    for base in range(0, jobs, 500):
        await queue.add_bulk([("noop", {"i": i}) for i in range(base, min(base + 500, jobs))])
    add_rate = jobs / (time.perf_counter() - start)
    worker = Worker(
        QUEUE, _noop, backend, concurrency=concurrency, schedule=False, telemetry=telemetry
    )
    start, cpu = time.perf_counter(), time.process_time()
    await worker.run(burst=True)
    rate = jobs / (time.perf_counter() - start)
    cpu_us = 1e6 * (time.process_time() - cpu) / jobs  # all threads: the span exporter's too
    counts = await backend.counts(QUEUE)
    assert counts["completed"] + counts["failed"] >= min(jobs, 100), counts
    return add_rate, rate, cpu_us


async def run(url: str, jobs: int, concurrency: int, rounds: int) -> None:
    backend = RedisBackend(url)
    await backend.open()
    exporter = Dropping()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    sampled = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.01)))
    sampled.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    modes: dict[str, Telemetry | None] = {
        "off": None,
        "otel": OtelTelemetry(tracer_provider=provider),
        "otel-1%": OtelTelemetry(tracer_provider=sampled),
    }
    results: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    try:
        await one_round(backend, min(jobs, 2000), concurrency, None)  # warm-up
        for _ in range(rounds):
            for mode, telemetry in modes.items():
                results[mode].append(await one_round(backend, jobs, concurrency, telemetry))
        await backend.obliterate(QUEUE)
    finally:
        await backend.close()
        provider.shutdown()
        sampled.shutdown()
    for mode, rows in results.items():
        adds = ", ".join(f"{a:,.0f}" for a, _, _ in rows)
        procs = ", ".join(f"{p:,.0f}" for _, p, _ in rows)
        cpus = ", ".join(f"{c:.0f}" for _, _, c in rows)
        print(
            f"{mode:>7}: add_bulk {adds} jobs/s; process c={concurrency} {procs} jobs/s; "
            f"worker CPU {cpus} us/job"
        )
    for mode in ("otel", "otel-1%"):
        pairs = list(zip(results["off"], results[mode], strict=True))
        ratio = [t[1] / o[1] for o, t in pairs]
        add_ratio = [t[0] / o[0] for o, t in pairs]
        cpu_ratio = [o[2] / t[2] for o, t in pairs]
        extra = statistics.median(t[2] - o[2] for o, t in pairs)
        print(
            f"{mode}/off: process {statistics.median(ratio):.3f} (rounds: "
            + ", ".join(f"{r:.3f}" for r in ratio)
            + f"); add_bulk {statistics.median(add_ratio):.3f}; worker CPU per job off/{mode} "
            f"{statistics.median(cpu_ratio):.3f} (+{extra:.0f} us/job)"
        )
    print(f"spans exported: {exporter.spans:,}")


def main() -> None:
    parser = argparse.ArgumentParser()
    prefix = f"bench-otel-{uuid.uuid4().hex[:6]}"
    parser.add_argument("--url", default=f"redis://127.0.0.1:6379/0?prefix={prefix}")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.jobs, args.concurrency, args.rounds))


if __name__ == "__main__":
    main()
