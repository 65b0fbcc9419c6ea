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
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
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


#: The SDK's built-in samplers, whose decision for a span with a valid parent depends only on
#: the parent's span context (its flags, whether it is remote, its trace id).
_BY_PARENT = re.compile(
    r"(ParentBased|TraceIdRatioBased|AlwaysOnSampler|AlwaysOffSampler|root|remoteParentSampled"
    r"|remoteParentNotSampled|localParentSampled|localParentNotSampled|[{}:,.\d e+-])*"
)
_by_parent: dict[int, tuple[object, bool]] = {}


def _decides_by_parent(sampler: Any) -> bool:
    """Whether ``sampler`` is made of the SDK's built-in samplers only (by its description),
    so that runs with the same parent get the same decision."""
    known = _by_parent.get(id(sampler))
    if known is None or known[0] is not sampler:
        module = type(sampler).__module__
        description = str(getattr(sampler, "get_description", lambda: "")())
        fits = module.startswith("opentelemetry.sdk.") and bool(_BY_PARENT.fullmatch(description))
        known = _by_parent[id(sampler)] = (sampler, fits)
    return known[1]


class _Unsampled:
    """A run the sampler drops: no span is started, ended or exported; the current span is a
    non-recording one in the trace of the job's add (as the SDK makes for a dropped span), so
    what the processor adds stays in that unsampled trace."""

    __slots__ = ("context", "token")

    def __init__(self, context: Context) -> None:
        self.context = context
        self.token: object = None

    def __enter__(self) -> Span:
        self.token = otel_context.attach(self.context)
        return trace.get_current_span(self.context)

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self.token)  # type: ignore[arg-type]


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
        #: the last carrier a run extracted, the context and propagator it was extracted with,
        #: and the result: the jobs of one bulk add carry the same carrier, parsed once
        self._extracted: tuple[Mapping[str, Any], Context, TextMapPropagator, Context] | None
        self._extracted = None
        #: the parent of the last run the sampler dropped, and the context that run made current
        self._dropped: tuple[Context, Context] | None = None

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

    def processing(self, queue: str, job: Job) -> AbstractContextManager[object]:
        carrier = job.opts.get(TRACE_KEY)
        # only the job says what its run continues: a job added untraced starts a trace
        if type(carrier) is not dict and not isinstance(carrier, Mapping):
            carrier = {}
        parent = self._extract(carrier)
        dropped = self._dropped
        if dropped is not None and dropped[0] is parent:
            return _Unsampled(dropped[1])  # a sibling of the last run dropped: same decision
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": job.id,
            "polyjobs.job.name": job.name,
            "polyjobs.job.attempt": job.attempts_made + 1,
        }
        name = f"process {queue}"
        # The sampler's decision first when the job's add was not sampled: a run it drops (as
        # the usual ParentBased sampler does) makes no span. (A sampled parent goes straight
        # to the tracer, which asks the sampler itself.)
        sampler = getattr(self.tracer, "sampler", None)  # the SDK's tracer; else no shortcut
        if sampler is not None:
            context = trace.get_current_span(parent).get_span_context()
            if context.is_valid and not context.trace_flags.sampled:
                result = sampler.should_sample(
                    parent, context.trace_id, name, SpanKind.CONSUMER, attributes
                )
                if not result.decision.is_recording():
                    # the span context the SDK gives a dropped span: a new span id, the
                    # parent's flags less "sampled", the sampler's trace state
                    span = trace.NonRecordingSpan(
                        trace.SpanContext(
                            context.trace_id,
                            random.getrandbits(64) or 1,
                            is_remote=False,
                            trace_flags=trace.TraceFlags(
                                context.trace_flags & ~trace.TraceFlags.SAMPLED
                            ),
                            trace_state=result.trace_state,
                        )
                    )
                    current = trace.set_span_in_context(span, parent)
                    if _decides_by_parent(sampler):
                        # the runs of the other jobs of the same add (same carrier, so the
                        # same parent object) get the same decision: this one, reused
                        self._dropped = (parent, current)
                    return _Unsampled(current)
        return self._processing_span(name, parent, attributes)

    def _extract(self, carrier: Mapping[str, Any]) -> Context:
        current, propagator = otel_context.get_current(), self._propagator()
        last = self._extracted
        if last and last[1] is current and last[2] is propagator and last[0] == carrier:
            return last[3]
        parent = propagator.extract(carrier)
        self._extracted = (dict(carrier), current, propagator, parent)
        return parent

    @contextmanager
    def _processing_span(
        self, name: str, parent: Context, attributes: dict[str, Any]
    ) -> Iterator[Span]:
        with self.tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            try:
                yield span
            except asyncio.CancelledError:
                span.set_status(Status(StatusCode.ERROR, "cancelled (timeout or shutdown)"))
                raise
