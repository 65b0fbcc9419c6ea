"""What OpenTelemetry tracing costs a Redis worker: jobs at concurrency 100, with and without
``OtelTelemetry``, in interleaved rounds (compare the ratios, not absolute rates).

    .venv/bin/python benchmarks/otel_cost.py [--jobs 20000] [--rounds 11] [--bulk 100]
        [--work-ms 0] [--modes off,otel-1%,otel,carried]

The traced runs use the OpenTelemetry SDK with a ``BatchSpanProcessor`` and an exporter that
drops the spans (what an application pays; exporting over the network is the SDK's own thread):
``otel`` records every trace, ``otel-1%`` samples 1 % of them (``ParentBased(TraceIdRatioBased)``,
the usual production setting: the other runs get non-recording spans); ``carried`` traces the
adds as ``otel-1%`` does but not the worker, which tells what the trace context carried in each
job costs the worker and its backend by themselves.
Jobs are added in bulk (``--bulk`` per call; traced: one ``send`` span per call and the trace
context in every job), then one worker processes them all (traced: one ``process`` span per
sampled job). A trace is one add call, so 1 % of the calls are sampled and a round's sampled
jobs come in lumps of ``--bulk``: the count is printed per round (it is random, as in
production). Jobs are no-ops, or burn ``--work-ms`` of CPU each.

Each round runs every mode once, in an order rotated from round to round. Per traced mode it
prints the ratio of its throughput to the untraced one of the same round, as the median over
the rounds with the quartiles and the extremes, and pooled (the untraced rounds' total time over
the traced rounds': every round weighed, its sampled lumps too), and the process's CPU per job
(all threads, the span exporter's included), which swings much less than the rates on a shared,
loaded machine.

``--calls [--baseline main]`` times ``OtelTelemetry.processing`` alone instead (and the span
it returns, entered and left, for a sampled run), per call: this tree's ``polyjobs/otel.py``
against the baseline revision's, loaded side by side in one process and timed in interleaved
rounds (CPU time, ``--jobs`` calls per round), for a run whose add was sampled and one whose
add was not (the jobs of one add: its context is reused).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import importlib.util
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import export_revision

from polyjobs import Job, Queue, Worker
from polyjobs.backends.memory import MemoryBackend
from polyjobs.backends.redis import RedisBackend
from polyjobs.otel import OtelTelemetry
from polyjobs.telemetry import Telemetry

QUEUE = "bench-otel"
ONE_PERCENT = ParentBased(TraceIdRatioBased(0.01))
#: name: (sampler, whether the worker traces)
MODES = {"off": (None, False), "otel": (None, True), "otel-1%": (ONE_PERCENT, True)}
MODES["carried"] = (ONE_PERCENT, False)


class Counting(SpanExporter):
    """Drops the spans, counting the job runs'."""

    def __init__(self) -> None:
        self.runs = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.runs += sum(span.name.startswith("process ") for span in spans)
        return SpanExportResult.SUCCESS


def _burn(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i
    return total


def loops_per_ms() -> int:
    """How many ``_burn`` loops take a millisecond of CPU here (the median of a few tries)."""
    tries = []
    for _ in range(7):
        start = time.process_time()
        _burn(200_000)
        tries.append(200_000 / (1000 * (time.process_time() - start)))
    return int(statistics.median(tries))


class Mode:
    def __init__(
        self, name: str, sampler: Sampler | None = None, traced_runs: bool = False
    ) -> None:
        self.name = name
        self.exporter = Counting()
        self.provider: TracerProvider | None = None
        self.telemetry: Telemetry | None = None
        self.run_telemetry: Telemetry | None = None
        if name != "off":
            self.provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
            self.provider.add_span_processor(
                BatchSpanProcessor(self.exporter, max_queue_size=100_000)
            )
            self.telemetry = OtelTelemetry(tracer_provider=self.provider)
            self.run_telemetry = self.telemetry if traced_runs else None
        #: per round: (bulk add jobs/s, process jobs/s, CPU µs per processed job, sampled runs)
        self.rounds: list[tuple[float, float, float, int]] = []


async def one_round(
    backend: RedisBackend, mode: Mode, jobs: int, bulk: int, concurrency: int, loops: int
) -> None:
    await backend.obliterate(QUEUE)
    exported = mode.exporter.runs
    queue = Queue(QUEUE, backend, telemetry=mode.telemetry)
    start = time.perf_counter()
    for base in range(0, jobs, bulk):
        await queue.add_bulk([("job", {"i": i}) for i in range(base, min(base + bulk, jobs))])
    add_rate = jobs / (time.perf_counter() - start)

    async def work(job: Job) -> None:
        if loops:
            _burn(loops)

    worker = Worker(
        QUEUE, work, backend, concurrency=concurrency, schedule=False, telemetry=mode.run_telemetry
    )
    start, cpu = time.perf_counter(), time.process_time()
    await worker.run(burst=True)
    rate = jobs / (time.perf_counter() - start)
    cpu_us = 1e6 * (time.process_time() - cpu) / jobs  # all threads: the span exporter's too
    counts = await backend.counts(QUEUE)
    assert counts["failed"] == counts["waiting"] == counts["active"] == 0, counts
    if mode.provider is not None:
        mode.provider.force_flush()
    mode.rounds.append((add_rate, rate, cpu_us, mode.exporter.runs - exported))


def spread(values: Sequence[float], form: str = ".3f") -> str:
    """The median [quartiles; extremes] of ``values``."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    low, high = min(values), max(values)
    return f"{median:{form}} [quartiles {q1:{form}} to {q3:{form}}; {low:{form}} to {high:{form}}]"


def report(modes: list[Mode], concurrency: int) -> None:
    for mode in modes:
        rows = mode.rounds
        procs = ", ".join(f"{p:,.0f}" for _, p, _, _ in rows)
        cpus = ", ".join(f"{c:.1f}" for _, _, c, _ in rows)
        print(f"{mode.name:>7}: process c={concurrency} {procs} jobs/s; worker CPU {cpus} us/job")
        if mode.provider is not None:
            print(f"{'':>9}sampled runs per round: {', '.join(str(r[3]) for r in rows)}")
    off = modes[0]
    for mode in modes[1:]:
        pairs = list(zip(off.rounds, mode.rounds, strict=True))
        ratio = [t[1] / o[1] for o, t in pairs]
        add_ratio = [t[0] / o[0] for o, t in pairs]
        extra = [t[2] - o[2] for o, t in pairs]
        # the same jobs in every round: the ratio of the total times, every round weighed
        pooled = sum(1 / o[1] for o, _ in pairs) / sum(1 / t[1] for _, t in pairs)
        print(f"{mode.name}/off throughput: {spread(ratio)}; all rounds' time pooled {pooled:.3f}")
        print(f"{'':>{len(mode.name) + 5}}add_bulk: {spread(add_ratio)}")
        print(
            f"{'':>{len(mode.name) + 5}}worker CPU +us/job: {spread(extra, '+.1f')} "
            f"(off: {statistics.median(o[2] for o, _ in pairs):.1f} us/job)"
        )


async def run(args: argparse.Namespace) -> None:
    names = args.modes.split(",")
    unknown = [n for n in names if n not in MODES]
    if unknown or names[0] != "off" or len(names) < 2:
        raise SystemExit(f"--modes: 'off' first, then some of {', '.join(MODES)}; got {names}")
    if args.rounds < 2:
        raise SystemExit("--rounds: at least 2 (the spread needs them)")
    modes = [Mode(name, *MODES[name]) for name in names]
    loops = loops_per_ms() * args.work_ms if args.work_ms else 0
    backend = RedisBackend(args.url)
    await backend.open()
    try:
        warm = Mode("off")
        await one_round(backend, warm, min(args.jobs, 2000), args.bulk, args.concurrency, loops)
        for r in range(args.rounds):
            for i in range(len(modes)):
                mode = modes[(r + i) % len(modes)]
                await one_round(backend, mode, args.jobs, args.bulk, args.concurrency, loops)
        await backend.obliterate(QUEUE)
    finally:
        await backend.close()
        for mode in modes:
            if mode.provider is not None:
                mode.provider.shutdown()
    what = f"{args.work_ms} ms of CPU" if args.work_ms else "no-op"
    print(f"{args.jobs:,} {what} jobs per round, add_bulk of {args.bulk}, {args.rounds} rounds")
    report(modes, args.concurrency)


def _otel_of(rev: str) -> tuple[ModuleType, str]:
    """``polyjobs/otel.py`` of revision ``rev``, loaded as a module of its own, and the commit."""
    tree, commit = export_revision(rev)
    try:
        spec = importlib.util.spec_from_file_location(
            f"otel_{commit}", Path(tree) / "polyjobs" / "otel.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return module, commit


async def _traced_job(provider: TracerProvider) -> Job:
    """A job added with a trace context under ``provider``'s sampler, as a worker holds it."""
    backend = MemoryBackend()
    await backend.open()
    queue = Queue(QUEUE, backend, telemetry=OtelTelemetry(tracer_provider=provider))
    (added,) = await queue.add_bulk([("job", {"i": 1})])
    record = await backend.get_job(QUEUE, added.id)
    assert record is not None
    return Job(record, QUEUE, backend)


def calls(args: argparse.Namespace) -> None:
    import polyjobs.otel

    baseline, commit = _otel_of(args.baseline)
    runs: dict[str, Callable[[], None]] = {}
    providers = []
    for ratio, kind in ((1.0, "sampled"), (0.0, "unsampled")):
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        provider.add_span_processor(BatchSpanProcessor(Counting(), max_queue_size=100_000))
        providers.append(provider)
        job = asyncio.run(_traced_job(provider))
        for module, tree in ((baseline, commit), (polyjobs.otel, "this tree")):
            telemetry = module.OtelTelemetry(tracer_provider=provider)

            def run(telemetry: OtelTelemetry = telemetry, job: Job = job) -> None:
                scope = telemetry.processing(QUEUE, job)
                if scope is not None:
                    with scope:
                        pass

            run()
            runs[f"{kind} run, {tree}"] = run
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs.items())
    for r in range(args.rounds):
        for name, run in order[r % len(order) :] + order[: r % len(order)]:
            start = time.process_time()
            for _ in range(args.jobs):
                contextvars.Context().run(run)  # each run in a context of its own, as a task
            times[name].append(1e6 * (time.process_time() - start) / args.jobs)
    for provider in providers:
        provider.shutdown()
    print(f"OtelTelemetry.processing per call, {args.rounds} rounds of {args.jobs:,} calls")
    for name, values in times.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:>28}: {spread(values, '.2f')} us; rounds {rounds}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    prefix = f"bench-otel-{uuid.uuid4().hex[:6]}"
    parser.add_argument("--url", default=f"redis://127.0.0.1:6379/0?prefix={prefix}")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--bulk", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--work-ms", type=int, default=0)
    parser.add_argument("--modes", default="off,otel-1%,otel,carried")
    parser.add_argument("--calls", action="store_true", help="time the telemetry's calls alone")
    parser.add_argument("--baseline", default="main", help="with --calls: the revision to compare")
    args = parser.parse_args(argv)
    if args.calls:
        calls(args)
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
