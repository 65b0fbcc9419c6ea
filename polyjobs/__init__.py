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

from importlib import metadata

from polyjobs.backend import Backend, JobRecord, ScheduleRecord, WorkerInfo
from polyjobs.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
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
from polyjobs.hookspecs import hookimpl
from polyjobs.job import Job
from polyjobs.options import Backoff, JobOptions, Keep, RateLimit
from polyjobs.plugins import PluginHost, open_backend
from polyjobs.queue import Queue
from polyjobs.runtime import QueueSpec, Retention, Runtime, RuntimeContext, ScheduleSpec
from polyjobs.worker import Worker
from polyjobs.worker_options import WorkerOptions

try:
    __version__ = metadata.version("polyjobs")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "Backoff",
    "ConfigError",
    "InvalidArgumentError",
    "Job",
    "JobFailedError",
    "JobNotFoundError",
    "JobOptions",
    "JobRecord",
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
]
