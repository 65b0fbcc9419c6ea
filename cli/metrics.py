"""``polyjobs start --metrics-port`` (Prometheus metrics served from the running instance) and
``--otel`` (OpenTelemetry tracing of its adds and job runs)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from polyjobs.cli.console import Console
from polyjobs.errors import ConfigError

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.prometheus import JobMetrics
    from polyjobs.telemetry import Telemetry

MISSING_EXTRA = "--metrics-port needs prometheus-client: pip install 'polyjobs[metrics]'"
MISSING_OTEL = "--otel needs OpenTelemetry: pip install 'polyjobs[otel]'"
NO_SDK = (
    "--otel: no OpenTelemetry SDK is set up in this process (run it under "
    "opentelemetry-instrument, or set a tracer provider in a plugin): spans are not exported"
)


def open_telemetry(console: Console) -> Telemetry:
    """Tracing through the process's global tracer provider and propagator."""
    try:
        from opentelemetry import trace

        from polyjobs.otel import OtelTelemetry
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "opentelemetry":
            raise
        raise ConfigError(MISSING_OTEL) from None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        console.note(NO_SDK)
    return OtelTelemetry()


def metrics_plugin() -> JobMetrics:
    """The plugin that counts what this process's workers do (needs the ``metrics`` extra)."""
    try:
        from polyjobs.prometheus import JobMetrics
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "prometheus_client":
            raise
        raise ConfigError(MISSING_EXTRA) from None
    return JobMetrics()


async def start_metrics(
    console: Console,
    backend: Backend,
    queues: list[str],
    jobs: JobMetrics | None,
    host: str,
    port: int,
) -> asyncio.Task[None]:
    """Serve the metrics of ``queues`` (as a task; cancel it to stop): the backend's gauges,
    and what ``jobs`` counted in this process when given."""
    from polyjobs.prometheus import MetricsExporter, bind

    async def names() -> list[str]:
        return list(queues)

    sock = bind(host, port)
    exporter = MetricsExporter(backend, names, jobs)
    task = asyncio.create_task(exporter.serve(host, port, sock=sock))
    task.add_done_callback(lambda _: sock.close())
    shown = f"[{host}]" if ":" in host else host
    console.note(f"polyjobs metrics on http://{shown}:{sock.getsockname()[1]}/metrics")
    return task
