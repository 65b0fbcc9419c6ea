"""OpenTelemetry tracing of polyjobs (the ``otel`` extra: ``pip install 'polyjobs[otel]'``).

::

    from polyjobs.otel import OtelTelemetry

    telemetry = OtelTelemetry()                       # the global tracer provider
    queue = Queue("emails", backend, telemetry=telemetry)
    worker = Worker("emails", send, backend, telemetry=telemetry)

An add is a ``PRODUCER`` span ``send <queue>``; its context is written into each job's options
(W3C ``traceparent``, through the configured propagator), so the ``CONSUMER`` span ``process
<queue>`` of the job's run, in whatever process and on whatever backend, is its child. Jobs added
by a processor continue the same trace: a chain of queues is one trace. Attributes follow
OpenTelemetry's messaging conventions (``messaging.system`` = ``polyjobs``,
``messaging.destination.name``, ``messaging.operation.type``, ``messaging.message.id``, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from polyjobs.telemetry import TRACE_KEY, checked_carrier

if TYPE_CHECKING:
    from polyjobs.backend import NewJob
    from polyjobs.job import Job

SYSTEM = "polyjobs"


class _Added:
    def __init__(self, span: Span, carrier: Mapping[str, str] | None, count: int) -> None:
        self.span = span
        self.carrier = carrier
        self.count = count

    def added(self, ids: Sequence[str]) -> None:
        if self.count == 1 and ids:
            self.span.set_attribute("messaging.message.id", ids[0])


class OtelTelemetry:
    """Spans through an OpenTelemetry tracer provider (default: the global one) and a text-map
    propagator (default: the global one, W3C trace context and baggage)."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        from polyjobs import __version__

        self.tracer = trace.get_tracer("polyjobs", __version__, tracer_provider=tracer_provider)
        self.propagator = propagator

    def _propagator(self) -> TextMapPropagator:
        return self.propagator or propagate.get_global_textmap()

    @contextmanager
    def adding(self, queue: str, jobs: Sequence[NewJob]) -> Iterator[_Added]:
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "add",
            "messaging.destination.name": queue,
        }
        if len(jobs) == 1:
            attributes["polyjobs.job.name"] = jobs[0].name
        else:
            attributes["messaging.batch.message_count"] = len(jobs)
        with self.tracer.start_as_current_span(
            f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            self._propagator().inject(carrier)
            yield _Added(span, checked_carrier(carrier), len(jobs))

    @contextmanager
    def processing(self, queue: str, job: Job) -> Iterator[Span]:
        carrier = job.opts.get(TRACE_KEY)
        # only the job says what its run continues: a job added untraced starts a trace
        parent = self._propagator().extract(carrier if isinstance(carrier, Mapping) else {})
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": job.id,
            "polyjobs.job.name": job.name,
            "polyjobs.job.attempt": job.attempts_made + 1,
        }
        with self.tracer.start_as_current_span(
            f"process {queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            try:
                yield span
            except asyncio.CancelledError:
                span.set_status(Status(StatusCode.ERROR, "cancelled (timeout or shutdown)"))
                raise
