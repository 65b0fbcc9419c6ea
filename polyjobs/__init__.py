"""polyjobs: a job-queue runtime with pluggable backends.

The public API is exactly ``__all__``; a test pins it, so a new public name is a decision::

    from polyjobs import Queue, Worker, open_backend

    async with open_backend("memory://") as backend:
        queue = Queue("emails", backend)
        await queue.add("welcome", {"to": "ada@example.com"}, attempts=3)
        worker = Worker("emails", send_email, backend, concurrency=10)
        await worker.run(burst=True)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyjobs.application import App
    from polyjobs.backend import (
        Backend,
        Dependencies,
        JobRecord,
        JobRef,
        ScheduleRecord,
        WorkerInfo,
    )
    from polyjobs.errors import (
        BackendError,
        BackendUnavailableError,
        ConfigError,
        GroupRateLimitError,
        InvalidArgumentError,
        JobFailedError,
        JobNotFoundError,
        JobTimeoutError,
        PluginError,
        PolyjobsError,
        RateLimitError,
        RetryAfter,
        UnknownBackendError,
        UnrecoverableError,
        WaitTimeoutError,
    )
    from polyjobs.eventloop import run
    from polyjobs.flow import FlowProducer, JobNode
    from polyjobs.hookspecs import hookimpl
    from polyjobs.job import Job
    from polyjobs.options import Backoff, Deduplication, JobOptions, Keep, RateLimit
    from polyjobs.plugins import PluginHost, open_backend
    from polyjobs.queue import Deduplicated, Queue
    from polyjobs.runtime import Runtime, RuntimeContext
    from polyjobs.spec import QueueSpec, Retention, ScheduleSpec
    from polyjobs.worker import Worker
    from polyjobs.worker_options import WorkerOptions

    __version__: str

#: Where each public name lives. They are imported on first use, so that a program (the
#: ``polyjobs`` command above all) pays only for the parts it touches.
_HOMES = {
    "polyjobs.application": ("App",),
    "polyjobs.backend": (
        "Backend",
        "Dependencies",
        "JobRecord",
        "JobRef",
        "ScheduleRecord",
        "WorkerInfo",
    ),
    "polyjobs.errors": (
        "BackendError",
        "BackendUnavailableError",
        "ConfigError",
        "GroupRateLimitError",
        "InvalidArgumentError",
        "JobFailedError",
        "JobNotFoundError",
        "JobTimeoutError",
        "PluginError",
        "PolyjobsError",
        "RateLimitError",
        "RetryAfter",
        "UnknownBackendError",
        "UnrecoverableError",
        "WaitTimeoutError",
    ),
    "polyjobs.eventloop": ("run",),
    "polyjobs.flow": ("FlowProducer", "JobNode"),
    "polyjobs.hookspecs": ("hookimpl",),
    "polyjobs.job": ("Job",),
    "polyjobs.options": ("Backoff", "Deduplication", "JobOptions", "Keep", "RateLimit"),
    "polyjobs.plugins": ("PluginHost", "open_backend"),
    "polyjobs.queue": ("Deduplicated", "Queue"),
    "polyjobs.runtime": ("Runtime", "RuntimeContext"),
    "polyjobs.spec": ("QueueSpec", "Retention", "ScheduleSpec"),
    "polyjobs.worker": ("Worker",),
    "polyjobs.worker_options": ("WorkerOptions",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("polyjobs")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
            version = "0.0.0"
        globals()[name] = version
        return version
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'polyjobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "App",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "Backoff",
    "ConfigError",
    "Deduplicated",
    "Deduplication",
    "Dependencies",
    "FlowProducer",
    "GroupRateLimitError",
    "InvalidArgumentError",
    "Job",
    "JobFailedError",
    "JobNode",
    "JobNotFoundError",
    "JobOptions",
    "JobRecord",
    "JobRef",
    "JobTimeoutError",
    "Keep",
    "PluginError",
    "PluginHost",
    "PolyjobsError",
    "Queue",
    "QueueSpec",
    "RateLimit",
    "RateLimitError",
    "Retention",
    "RetryAfter",
    "Runtime",
    "RuntimeContext",
    "ScheduleRecord",
    "ScheduleSpec",
    "UnknownBackendError",
    "UnrecoverableError",
    "WaitTimeoutError",
    "Worker",
    "WorkerInfo",
    "WorkerOptions",
    "__version__",
    "hookimpl",
    "open_backend",
    "run",
]
