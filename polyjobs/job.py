"""``Job``: one job as the API shows it, with the calls a processor makes on it."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polyjobs import codec
from polyjobs.backend import CAP_FLOWS, Dependencies, flows_of
from polyjobs.errors import JobFailedError, JobNotFoundError, WaitTimeoutError
from polyjobs.options import Duration, JobOptions, seconds

if TYPE_CHECKING:
    from polyjobs.backend import Backend, JobRecord, JobRef, JobState, NewJob

MAX_LOG_LINES = 1000
FINAL_STATES = ("completed", "failed")


class Job:
    """A job of a queue: its stored fields, and (inside a processor) progress and logs.

    ``timestamp``, ``processed_on`` and ``finished_on`` are epoch seconds. ``context`` is what
    the worker (or Runtime) was given for its processors: shared clients, stores, queues.
    """

    # what a job has before it ran, as class defaults: ``added`` sets only the rest
    _data_json: str | None = None  # data not decoded yet (see ``data``)
    _opts_shared = False  # ``_opts`` is shared (an add's, a fetch's): ``opts`` copies it when read
    _options: JobOptions | None = None
    attempts_made = 0
    attempts_started = 0
    stalls = 0
    progress: Any = None
    returnvalue: Any = None
    failed_reason: str | None = None
    stacktrace: str | None = None
    processed_on: float | None = None
    finished_on: float | None = None
    context: Any = None
    _loop: asyncio.AbstractEventLoop | None = None
    _on_progress: Callable[[Job, Any], None] | None = None
    #: Set (with its reason in ``cancel_reason``) once someone cancelled this job while it
    #: runs; a plain (thread) processor checks it and returns or raises early.
    cancelled = False
    cancel_reason: str | None = None

    def __init__(
        self, record: JobRecord, queue: str, backend: Backend, context: Any = None
    ) -> None:
        self.queue_name = queue
        self.id = record.id
        self.name = record.name
        self._data: Any = record.data
        self._opts: dict[str, Any] = record.opts
        self._opts_shared = True  # a fetch's records may share one dict (copied when read)
        self.state: JobState = record.state
        self.attempts_made = record.attempts_made
        self.attempts_started = record.attempts_started
        self.stalls = record.stalls
        self.progress = record.progress
        self.returnvalue = record.returnvalue
        self.failed_reason = record.failed_reason
        self.stacktrace = record.stacktrace
        self.timestamp = record.timestamp
        self.run_at = record.run_at
        self.priority = record.priority
        self.processed_on = record.processed_on
        self.finished_on = record.finished_on
        self.context = context
        self._backend = backend

    @classmethod
    def added(
        cls,
        queue: str,
        backend: Backend,
        job_id: str,
        new: NewJob,
    ) -> Job:
        """The job just stored from ``new`` (not run yet), built without a ``JobRecord``; its
        data stays the JSON text until read, its options ``new.opts`` until read (then a copy,
        so that changing it does not change what other adds share)."""
        job = cls.__new__(cls)
        job.queue_name, job.id, job.name, job._backend = queue, job_id, new.name, backend
        job._data, job._data_json = None, new.data_json
        job._opts, job._opts_shared = new.opts, True
        job.timestamp, job.run_at, job.priority = new.timestamp, new.run_at, new.priority
        job.state = "delayed" if new.run_at > new.timestamp else "waiting"
        return job

    def __repr__(self) -> str:
        return f"<Job {self.queue_name}/{self.id} {self.name!r} {self.state}>"

    @property
    def data(self) -> Any:
        """The job's data (decoded on first use when the job was just added)."""
        if self._data_json is not None:
            self._data, self._data_json = codec.decode(self._data_json), None
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data, self._data_json = value, None

    @property
    def opts(self) -> dict[str, Any]:
        """The job's stored options, as JSON (replace it, do not change it in place)."""
        if self._opts_shared:  # a copy all the way down: nested options are shared too
            self._opts, self._opts_shared = copy.deepcopy(self._opts), False
        return self._opts

    @opts.setter
    def opts(self, value: dict[str, Any]) -> None:
        self._opts, self._opts_shared, self._options = value, False, None

    @property
    def options(self) -> JobOptions:
        """The job's options, parsed (once; again after ``opts`` is replaced)."""
        if self._options is None:
            self._options = JobOptions.from_json(self._opts)
        return self._options

    @property
    def group(self) -> str | None:
        """The job's group (``Queue.add(..., group=...)``), or None."""
        return self.options.group

    def to_dict(self) -> dict[str, Any]:
        """Every stored field, as JSON-ready values (what ``jobs show --json`` prints)."""
        return {
            "id": self.id,
            "queue": self.queue_name,
            "name": self.name,
            "state": self.state,
            "data": self.data,
            "opts": self.opts,
            "progress": self.progress,
            "attempts_made": self.attempts_made,
            "attempts_started": self.attempts_started,
            "stalls": self.stalls,
            "returnvalue": self.returnvalue,
            "failed_reason": self.failed_reason,
            "stacktrace": self.stacktrace,
            "timestamp": self.timestamp,
            "run_at": self.run_at,
            "priority": self.priority,
            "processed_on": self.processed_on,
            "finished_on": self.finished_on,
        }

    # -- inside a processor ----------------------------------------------------------------
    async def update_progress(self, progress: Any) -> None:
        """Store the job's progress: a number (e.g. percent) or a JSON object."""
        text = codec.encode(progress, f"progress of job {self.id}")
        await self._backend.update_progress(self.queue_name, self.id, text)
        self.progress = codec.decode(text)
        if self._on_progress is not None:
            self._on_progress(self, self.progress)

    async def log(self, text: str) -> None:
        """Append a line to the job's log (the last 1000 lines are kept)."""
        await self._backend.add_log(self.queue_name, self.id, str(text), MAX_LOG_LINES)

    def update_progress_sync(self, progress: Any) -> None:
        """``update_progress`` for a plain (threaded) processor function."""
        self._call_from_thread(self.update_progress(progress))

    def log_sync(self, text: str) -> None:
        """``log`` for a plain (threaded) processor function."""
        self._call_from_thread(self.log(text))

    def _call_from_thread(self, coro: Any) -> None:
        if self._loop is None:
            coro.close()
            raise RuntimeError("update_progress_sync/log_sync are for processors run by a Worker")
        asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # -- flows -----------------------------------------------------------------------------
    async def dependencies(self) -> Dependencies:
        """This job's children by state: ``processed`` (completed, with their return values),
        ``pending`` (with their state now) and ``ignored`` (failed, with their reasons), each
        keyed by :class:`~polyjobs.backend.JobRef` (``str(ref)`` is ``"<queue>:<id>"``)."""
        if not _has_flows(self._backend):
            return Dependencies()
        return await flows_of(self._backend).get_dependencies(self.queue_name, self.id)

    async def children_values(self) -> dict[str, Any]:
        """``{"<queue>:<id>": return value}`` of this job's completed children."""
        deps = await self.dependencies()
        return {str(ref): value for ref, value in sorted(deps.processed.items())}

    async def ignored_failures(self) -> dict[str, str]:
        """``{"<queue>:<id>": failed reason}`` of the children whose failure this job ignored
        (``ignore_dependency_on_failure`` or ``continue_parent_on_failure``)."""
        deps = await self.dependencies()
        return {str(ref): reason for ref, reason in sorted(deps.ignored.items())}

    async def parents(self) -> list[JobRef]:
        """The jobs waiting for (or that waited for) this one."""
        if not _has_flows(self._backend):
            return []
        return sorted(await flows_of(self._backend).get_parents(self.queue_name, self.id))

    # -- from anywhere ---------------------------------------------------------------------
    async def logs(self, start: int = 0, end: int = -1) -> list[str]:
        return await self._backend.get_logs(self.queue_name, self.id, start, end)

    async def refresh(self) -> Job:
        """Reload the job's fields from the backend."""
        record = await self._backend.get_job(self.queue_name, self.id)
        if record is None:
            raise JobNotFoundError(f"job {self.id} not found in queue {self.queue_name!r}")
        fresh = Job(record, self.queue_name, self._backend, self.context)
        for name in ("state", "attempts_made", "attempts_started", "stalls", "progress"):
            setattr(self, name, getattr(fresh, name))
        for name in ("returnvalue", "failed_reason", "stacktrace", "run_at"):
            setattr(self, name, getattr(fresh, name))
        self.processed_on, self.finished_on = fresh.processed_on, fresh.finished_on
        return self

    async def wait(self, timeout: Duration | None = None) -> Any:
        """Wait until the job is completed and return its result.

        Reads the job's state (never only an event stream, so it cannot hang on a lost
        event). Raises ``JobFailedError`` when the job failed, ``WaitTimeoutError`` after
        ``timeout``, and ``JobNotFoundError`` when the job was removed (e.g. by
        ``remove_on_complete=True``) before its end was seen.
        """
        deadline = None if timeout is None else time.monotonic() + seconds(timeout, "timeout")
        interval = 0.005
        while True:
            await self.refresh()
            if self.state == "completed":
                return self.returnvalue
            if self.state == "failed":
                raise JobFailedError(self.id, self.failed_reason)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"job {self.id} of queue {self.queue_name!r} still {self.state} "
                    f"after {timeout}s"
                )
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            await asyncio.sleep(max(pause, 0.0))
            interval = min(interval * 2, 0.25)


def _has_flows(backend: Backend) -> bool:
    return CAP_FLOWS in backend.capabilities
