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
import sys
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
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TraceState
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


def _decides_by_parent(sampler: object) -> bool:
    """Whether ``sampler`` is made of the SDK's built-in samplers only (by its description),
    so that runs with the same parent get the same decision."""
    description = str(getattr(sampler, "get_description", lambda: "")())
    return type(sampler).__module__.startswith("opentelemetry.sdk.") and bool(
        _BY_PARENT.fullmatch(description)
    )


def _drops_unsampled_remote(sampler: object) -> bool:
    """Whether ``sampler`` is the SDK's ParentBased with its default for a remote parent that
    was not sampled (``ALWAYS_OFF``): it drops such a span whatever its trace, name and
    attributes, and gives it the parent's trace state."""
    sdk = sys.modules.get("opentelemetry.sdk.trace.sampling")
    return (
        sdk is not None
        and type(sampler) in (sdk.ParentBased, sdk.ParentBasedTraceIdRatio)
        and getattr(sampler, "_remote_parent_not_sampled", None) is sdk.ALWAYS_OFF
    )


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


def _run_dropped(entry: tuple[Context, T]) -> _Current[T] | None:
    """The run of a span the sampler drops: its context made current for the rest of the
    job's task, where the worker asks (None: nothing to close, the task's end drops it); with
    another runtime context than the SDK's default, a scope that attaches and detaches it."""
    if _CURRENT is None:
        return _Current(entry)
    _CURRENT.set(entry[0])
    return None


class _RunSpan:
    """The span of a sampled run, current around it with the job's context (its carrier's
    baggage too) and ended after it: what ``start_as_current_span`` does (an error status and
    the exception recorded for a failure), without its three generator context managers; a
    cancelled run (timeout, shutdown) is an error too."""

    __slots__ = ("context", "span", "token")

    def __init__(self, span: Span, context: Context) -> None:
        self.span = span
        self.context = context
        self.token: Any = None

    def __enter__(self) -> Span:
        if _CURRENT is None:
            self.token = otel_context.attach(self.context)
        else:
            self.token = _CURRENT.set(self.context)
        return self.span

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        span = self.span
        try:
            if _CURRENT is None:
                otel_context.detach(self.token)
            else:
                _CURRENT.reset(self.token)
        finally:
            if isinstance(exc, asyncio.CancelledError):
                span.set_status(Status(StatusCode.ERROR, "cancelled (timeout or shutdown)"))
            elif isinstance(exc, Exception):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()


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


def _read_traceparent(traceparent: str) -> tuple[int, int, int] | None:
    """(trace id, parent id, flags) of a valid version-00 W3C ``traceparent``, else None (the
    propagator is asked then: it reads a few more forms, or finds nothing)."""
    found = _TRACEPARENT.fullmatch(traceparent)
    if found is None:
        return None
    trace_id, span_id = int(found[1], 16), int(found[2], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(found[3], 16)


def _remote_parent(read: tuple[int, int, int]) -> Context:
    """The context the W3C propagator extracts from a ``traceparent`` that
    :func:`_read_traceparent` read as ``read``."""
    remote = trace.SpanContext(*read[:2], is_remote=True, trace_flags=trace.TraceFlags(read[2]))
    return trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())


def _parse_traceparent(traceparent: str) -> Context | None:
    """The context the W3C propagator extracts from ``{"traceparent": traceparent}``, or None
    when :func:`_read_traceparent` does not read it."""
    read = _read_traceparent(traceparent)
    return None if read is None else _remote_parent(read)


_SAMPLED = trace.TraceFlags.SAMPLED

#: How many unsampled (and sampled) carriers an OtelTelemetry remembers (then it starts over).
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
        #: the contexts of sampled adds, by their jobs' traceparent: each run's parent
        self._sampled: dict[str, Context] = {}
        # the SDK's tracer has these (its sampler cannot change); without them, no shortcut
        self._sampler: Any = getattr(self.tracer, "sampler", None)
        self._ids: Any = getattr(self.tracer, "id_generator", None)
        #: whether runs with the same parent get the same decision (then they are cached)
        self._by_parent = _decides_by_parent(self._sampler)
        #: whether a run whose add was not sampled is dropped, known without asking
        self._drops_unsampled = _drops_unsampled_remote(self._sampler)

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

    def processing(self, queue: str, job: Job) -> AbstractContextManager[object] | None:
        # the options as the job holds them (read only: ``opts`` may copy them first)
        carrier = job._opts.get(TRACE_KEY)
        # first the common case, as cheap as can be: a job whose add was not sampled, like
        # one run before (the jobs of one bulk add share their carrier)
        if type(carrier) is dict and len(carrier) == 1:
            traceparent = carrier.get("traceparent")
            if (
                type(traceparent) is str
                and (self.propagator or propagate.get_global_textmap()) is self._w3c
            ):
                dropped = self._unsampled.get(traceparent)
                if dropped is not None:
                    if _CURRENT is None:
                        return _Current(dropped)
                    _CURRENT.set(dropped[0])
                    return None
        return self._run_scope(queue, job, carrier)

    def _run_scope(
        self, queue: str, job: Job, carrier: object
    ) -> AbstractContextManager[object] | None:
        # only the job says what its run continues: a job added untraced starts a trace
        if type(carrier) is not dict and not isinstance(carrier, Mapping):
            carrier = {}
        propagator = self._propagator()
        if propagator is not self._w3c and _reads_like_w3c(propagator):
            self._w3c = propagator
        traceparent = carrier.get("traceparent") if len(carrier) == 1 else None
        parent = sampled = None
        if propagator is self._w3c and type(traceparent) is str:
            # a sampled add's runs share its context, known sampled: no sampler call of ours
            parent = sampled = self._sampled.get(traceparent)
            if parent is None:
                read = _read_traceparent(traceparent)
                if read is not None and self._drops_unsampled and not read[2] & _SAMPLED:
                    # the usual sampler drops it for sure: no parent context, no sampler call
                    return self._cached(traceparent, self._dropped_span(Context(), *read[::2]))
                parent = self._parent_of(traceparent, read)
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
        dropped = (
            None
            if sampled is not None
            else self._dropped(name, SpanKind.CONSUMER, parent, attributes)
        )
        if dropped is None:
            span = self.tracer.start_span(name, parent, SpanKind.CONSUMER, attributes)
            context = trace.set_span_in_context(span, parent)
            if span.is_recording():
                return _RunSpan(span, context)
            dropped = context, span
        if traceparent is not None and self._by_parent:
            return self._cached(traceparent, dropped)
        return _run_dropped(dropped)

    def _parent_of(self, traceparent: str, read: tuple[int, int, int] | None) -> Context | None:
        """The parent context of the runs whose jobs carry ``traceparent`` (``read``), kept for
        the other runs of a sampled add; None when it was not read."""
        if read is None:
            return None
        parent = _remote_parent(read)
        if read[2] & _SAMPLED:
            if len(self._sampled) >= _DROPPED_MAX:
                self._sampled.clear()
            self._sampled[traceparent] = parent
        return parent

    def _cached(self, traceparent: str, dropped: tuple[Context, Span]) -> _Current[Span] | None:
        """The run of ``dropped``, remembered for the other runs with this carrier."""
        if len(self._unsampled) >= _DROPPED_MAX:
            self._unsampled.clear()
        self._unsampled[traceparent] = dropped
        return _run_dropped(dropped)

    def _dropped(
        self, name: str, kind: SpanKind, parent: Context, attributes: dict[str, Any]
    ) -> tuple[Context, Span] | None:
        """When ``parent`` (the job's add, or the run that adds) was not sampled and the
        sampler drops this span too (as the usual ParentBased sampler does), the context to
        make current and its non-recording span; else None: the tracer is asked (it asks the
        sampler itself; a new trace's id is the tracer's to choose)."""
        if self._sampler is None:
            return None
        context = trace.get_current_span(parent).get_span_context()
        if not context.is_valid or context.trace_flags.sampled:
            return None
        result = self._sampler.should_sample(parent, context.trace_id, name, kind, attributes)
        if result.decision.is_recording():
            return None
        return self._dropped_span(parent, context.trace_id, context.trace_flags, result.trace_state)

    def _dropped_span(
        self, parent: Context, trace_id: int, flags: int, trace_state: TraceState | None = None
    ) -> tuple[Context, Span]:
        """The span the SDK makes when its sampler drops a child of ``parent``: a new span id,
        the parent's flags less "sampled", the sampler's trace state; and ``parent`` with it."""
        span_id = self._ids.generate_span_id() if self._ids else random.getrandbits(64) or 1
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id,
                span_id,
                is_remote=False,
                trace_flags=trace.TraceFlags(flags & ~_SAMPLED),
                trace_state=trace_state,
            )
        )
        return trace.set_span_in_context(span, parent), span
