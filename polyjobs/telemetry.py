"""What a ``Queue`` and a ``Worker`` call for tracing: a span around each add and each job run.

A :class:`Telemetry` is given to ``Queue(telemetry=...)``, ``Worker(telemetry=...)`` or
``Runtime(telemetry=...)`` (never set globally). :class:`polyjobs.otel.OtelTelemetry` implements
it with OpenTelemetry (the ``otel`` extra). The trace context travels in the job itself: the
carrier an add returns is stored in the job's options under :data:`TRACE_KEY` (a few short
strings, e.g. W3C ``traceparent``), on every backend, so the run of a job (in any process)
continues the trace of the code that added it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from polyjobs.backend import NewJob
    from polyjobs.job import Job

#: The key of the job options that carries the trace context.
TRACE_KEY = "trace"
#: Bounds of a carrier: a propagator that writes more is not stored (nothing is traced).
MAX_CARRIER_KEYS = 8
MAX_CARRIER_CHARS = 1024


@runtime_checkable
class AddScope(Protocol):
    """The span of one add call, as the queue sees it."""

    #: What to store in each job added (``opts["trace"]``), or None for nothing.
    carrier: Mapping[str, str] | None

    def added(self, ids: Sequence[str]) -> None:
        """The ids the backend gave the jobs."""


@runtime_checkable
class Telemetry(Protocol):
    """Spans around adds and job runs (see :mod:`polyjobs.otel` for OpenTelemetry)."""

    def adding(self, queue: str, jobs: Sequence[NewJob]) -> AbstractContextManager[AddScope]:
        """Around one ``add``/``add_bulk`` of ``jobs`` to ``queue``."""

    def processing(self, queue: str, job: Job) -> AbstractContextManager[object] | None:
        """Around one run of ``job``'s processor; exceptions pass through it. The worker asks
        in the job's own task, right before the run: None means nothing wraps the run (e.g.
        one not traced), whose context the call may have made current for the rest of that
        task (the run and the worker's bookkeeping of its outcome)."""


def checked_carrier(carrier: Mapping[str, str] | None) -> dict[str, str] | None:
    """``carrier`` as a plain dict when it is small strings only; else None."""
    if not carrier or len(carrier) > MAX_CARRIER_KEYS:
        return None
    out = {}
    for key, value in carrier.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return None
        out[key] = value
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_CARRIER_CHARS:
        return None
    return out
