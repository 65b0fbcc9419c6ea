"""The one error tree of polyjobs.

Everything the library raises derives from :class:`PolyjobsError`; the CLI maps it to one line on
stderr and a non-zero exit. Messages are one line, name the object concerned and never contain a
secret (URLs are redacted before they reach a message)::

    PolyjobsError
    ├── InvalidArgumentError      bad input at the API edge: options, data that is not JSON, ids
    ├── ConfigError               settings that cannot be resolved; a missing optional driver
    ├── UnknownBackendError       a URL scheme no plugin provides
    ├── PluginError               a plugin misbehaves (e.g. two plugins claim one scheme)
    ├── BackendError              the storage failed (connection lost, corrupt file, ...)
    │   └── BackendUnavailableError   the backend cannot be reached at all
    ├── JobNotFoundError          no job with that id in that queue
    ├── WaitTimeoutError          ``Job.wait`` gave up before the job finished
    ├── JobFailedError            ``Job.wait`` on a job that ended in ``failed``
    └── ProcessorSignal           raised *by processors* to steer the worker
        ├── UnrecoverableError    fail now, no further attempts
        ├── RetryAfter            retry after the given delay (e.g. an HTTP 429 ``retry_after``)
        ├── RateLimitError        hold the whole queue for a while; this job waits, no attempt
        │   └── GroupRateLimitError   hold only this job's group (``Queue.add(group=...)``)
        └── JobTimeoutError       the job ran past its timeout (raised by the worker)
"""

from __future__ import annotations

from datetime import timedelta


class PolyjobsError(Exception):
    """Root of every error polyjobs raises."""


class InvalidArgumentError(PolyjobsError, ValueError):
    """An argument, option or payload was rejected before anything was stored."""


class ConfigError(PolyjobsError):
    """A setting could not be resolved, or an optional dependency is missing."""


class UnknownBackendError(ConfigError):
    """No installed plugin provides a backend for this URL scheme."""


class PluginError(PolyjobsError):
    """A plugin broke the plugin contract."""


class BackendError(PolyjobsError):
    """The backend failed to perform a storage operation."""


class BackendUnavailableError(BackendError):
    """The backend cannot be reached (connection refused, file not openable, ...)."""


class JobNotFoundError(PolyjobsError, LookupError):
    """No job with this id exists in this queue."""


class WaitTimeoutError(PolyjobsError, TimeoutError):
    """``Job.wait()`` timed out before the job reached a final state."""


class JobFailedError(PolyjobsError):
    """The awaited job ended in ``failed``; ``reason`` holds its failure reason."""

    def __init__(self, job_id: str, reason: str | None) -> None:
        super().__init__(f"job {job_id} failed: {reason}")
        self.job_id = job_id
        self.reason = reason


class ProcessorSignal(PolyjobsError):
    """Base of the exceptions a processor raises to tell the worker what to do."""


class UnrecoverableError(ProcessorSignal):
    """Raise from a processor to fail the job at once, whatever attempts are left."""


class RetryAfter(ProcessorSignal):
    """Raise from a processor to retry the job after ``seconds``.

    The attempt counts like any failed attempt; when no attempts are left the job fails.
    """

    def __init__(self, seconds: float | timedelta, reason: str = "") -> None:
        secs = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if not secs >= 0:  # NaN too
            raise InvalidArgumentError(f"RetryAfter needs a delay >= 0, got {secs}")
        super().__init__(reason or f"retry requested after {secs:g}s")
        self.seconds = secs


class RateLimitError(ProcessorSignal):
    """Raise from a processor when the remote side rate-limits the whole queue (e.g. a Discord
    429 with ``global: true``): no job of the queue starts for ``seconds``, on any worker,
    and this job goes back to waiting without counting an attempt.

    Needs a backend with the ``rate-limit`` capability; elsewhere it acts like ``RetryAfter``.
    """

    def __init__(self, seconds: float | timedelta, reason: str = "") -> None:
        secs = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if not secs >= 0:  # NaN too
            raise InvalidArgumentError(f"RateLimitError needs a delay >= 0, got {secs}")
        super().__init__(reason or f"queue rate-limited for {secs:g}s")
        self.seconds = secs


class GroupRateLimitError(RateLimitError):
    """Raise from a processor when the remote side rate-limits only what this job's group
    stands for (e.g. a Discord 429 for one webhook, the jobs grouped by webhook): no job of
    that group starts for ``seconds``, on any worker; the queue's other groups go on, and
    this job goes back to waiting without counting an attempt.

    Needs a backend with the ``groups`` capability and a job added with a ``group``;
    elsewhere (a job without a group) it holds the whole queue, as ``RateLimitError`` does.
    """

    def __init__(self, seconds: float | timedelta, reason: str = "") -> None:
        secs = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if not secs >= 0:  # NaN too
            raise InvalidArgumentError(f"GroupRateLimitError needs a delay >= 0, got {secs}")
        super().__init__(secs, reason or f"group rate-limited for {secs:g}s")


class JobTimeoutError(ProcessorSignal, TimeoutError):
    """The job did not finish within its ``timeout``."""
