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
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from polyjobs.telemetry import TRACE_KEY, checked_carrier

if TYPE_CHECKING:
    from polyjobs.backend import NewJob
    from polyjobs.job import Job

SYSTEM = "polyjobs"
T = TypeVar("T")


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


#: The ContextVar behind OpenTelemetry's current context (its default runtime context), set
#: directly around an unsampled add or run; None with another runtime context: its attach and
#: detach.
_CURRENT: ContextVar[Context] | None = None
if type(otel_context._RUNTIME_CONTEXT) is ContextVarsRuntimeContext:
    _CURRENT = otel_context._RUNTIME_CONTEXT._current_context


class _Current(Generic[T]):
    """A context made current for one add or run of a span the sampler drops: no span is
    started, ended or exported; the current span is a non-recording one in the trace of the
    parent (as the SDK makes for a dropped span), so what the code inside adds stays in that
    unsampled trace. Its value is ``entry[1]``."""

    __slots__ = ("entry", "token")

    def __init__(self, entry: tuple[Context, T]) -> None:
        self.entry = entry
        self.token: Any = None

    def __enter__(self) -> T:
        if _CURRENT is None:
            self.token = otel_context.attach(self.entry[0])
        else:
            self.token = _CURRENT.set(self.entry[0])
        return self.entry[1]

    def __exit__(self, *exc: object) -> None:
        if _CURRENT is None:
            otel_context.detach(self.token)
        else:
            _CURRENT.reset(self.token)


#: A W3C ``traceparent`` of version 00: trace id, parent id, flags.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_W3C = (TraceContextTextMapPropagator, W3CBaggagePropagator)


def _reads_like_w3c(propagator: TextMapPropagator) -> bool:
    """Whether ``propagator`` extracts a carrier that holds a ``traceparent`` only exactly as
    :func:`_parse_traceparent` does: the W3C trace-context propagator, alone or first in a
    composite of W3C ones (the default), which starts from an empty context."""
    if type(propagator) is TraceContextTextMapPropagator:
        return True
    if type(propagator) is not CompositePropagator:
        return False
    parts = getattr(propagator, "_propagators", None)
    return (
        isinstance(parts, (list, tuple))
        and bool(parts)
        and type(parts[0]) is TraceContextTextMapPropagator
        and all(type(part) in _W3C for part in parts)
    )


def _parse_traceparent(traceparent: str) -> Context | None:
    """The context the W3C propagator extracts from ``{"traceparent": traceparent}``, or None
    when it is not a valid version-00 value (the propagator is asked then)."""
    found = _TRACEPARENT.fullmatch(traceparent)
    if found is None:
        return None
    trace_id, span_id = int(found[1], 16), int(found[2], 16)
    if not trace_id or not span_id:
        return None
    remote = trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(int(found[3], 16))
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())


#: How many unsampled carriers an OtelTelemetry remembers (then it starts over).
_DROPPED_MAX = 1024


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
        #: the propagator last seen that reads a traceparent as the W3C one does (the default)
        self._w3c: TextMapPropagator | None = None
        #: the runs the sampler drops, by their job's traceparent: what each makes current
        self._unsampled: dict[str, tuple[Context, Span]] = {}

    def _propagator(self) -> TextMapPropagator:
        return self.propagator or propagate.get_global_textmap()

    def adding(self, queue: str, jobs: Sequence[NewJob]) -> AbstractContextManager[_Added]:
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
        name, current = f"send {queue}", otel_context.get_current()
        dropped = self._dropped(name, SpanKind.PRODUCER, current, attributes)
        if dropped is None:
            span = self.tracer.start_span(name, current, SpanKind.PRODUCER, attributes)
            if span.is_recording():
                return self._adding_span(span, len(jobs))
            dropped = trace.set_span_in_context(span, current), span
        # a dropped span: what start_as_current_span does with it, less its no-op calls
        context, span = dropped
        carrier: dict[str, str] = {}
        self._propagator().inject(carrier, context)
        return _Current((context, _Added(span, checked_carrier(carrier), len(jobs))))

    @contextmanager
    def _adding_span(self, span: Span, count: int) -> Iterator[_Added]:
        with trace.use_span(span, end_on_exit=True):
            carrier: dict[str, str] = {}
            self._propagator().inject(carrier)
            yield _Added(span, checked_carrier(carrier), count)

    def processing(self, queue: str, job: Job) -> AbstractContextManager[object]:
        carrier = job.opts.get(TRACE_KEY)
        # first the common case, as cheap as can be: a job whose add was not sampled, like
        # one run before (the jobs of one bulk add share their carrier)
        if type(carrier) is dict and len(carrier) == 1:
            traceparent = carrier.get("traceparent")
            propagator = self.propagator or propagate.get_global_textmap()
            if type(traceparent) is str and propagator is self._w3c:
                dropped = self._unsampled.get(traceparent)
                if dropped is not None:
                    return _Current(dropped)
        return self._run_scope(queue, job, carrier)

    def _run_scope(self, queue: str, job: Job, carrier: object) -> AbstractContextManager[object]:
        # only the job says what its run continues: a job added untraced starts a trace
        if not isinstance(carrier, Mapping):
            carrier = {}
        propagator = self._propagator()
        if propagator is not self._w3c and _reads_like_w3c(propagator):
            self._w3c = propagator
        traceparent = carrier.get("traceparent") if len(carrier) == 1 else None
        parent = None
        if propagator is self._w3c and type(traceparent) is str:
            parent = _parse_traceparent(traceparent)
        if parent is None:
            traceparent, parent = None, propagator.extract(carrier)
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
        dropped = self._dropped(name, SpanKind.CONSUMER, parent, attributes)
        if dropped is None:
            return self._processing_span(name, parent, attributes)
        if traceparent is not None and _decides_by_parent(getattr(self.tracer, "sampler", None)):
            # the runs of the other jobs with this carrier get the same decision: this one
            if len(self._unsampled) >= _DROPPED_MAX:
                self._unsampled.clear()
            self._unsampled[traceparent] = dropped
        return _Current(dropped)

    def _dropped(
        self, name: str, kind: SpanKind, parent: Context, attributes: dict[str, Any]
    ) -> tuple[Context, Span] | None:
        """When ``parent`` (the job's add, or the run that adds) was not sampled and the
        sampler drops this span too (as the usual ParentBased sampler does), the context to
        make current and its non-recording span; else None: the tracer is asked (it asks the
        sampler itself; a new trace's id is the tracer's to choose)."""
        sampler = getattr(self.tracer, "sampler", None)  # the SDK's tracer; else no shortcut
        if sampler is None:
            return None
        context = trace.get_current_span(parent).get_span_context()
        if not context.is_valid or context.trace_flags.sampled:
            return None
        result = sampler.should_sample(parent, context.trace_id, name, kind, attributes)
        if result.decision.is_recording():
            return None
        # the span context the SDK gives a dropped span: a new span id, the parent's flags
        # less "sampled", the sampler's trace state
        ids = getattr(self.tracer, "id_generator", None)
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                context.trace_id,
                ids.generate_span_id() if ids is not None else random.getrandbits(64) or 1,
                is_remote=False,
                trace_flags=trace.TraceFlags(context.trace_flags & ~trace.TraceFlags.SAMPLED),
                trace_state=result.trace_state,
            )
        )
        return trace.set_span_in_context(span, parent), span

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
