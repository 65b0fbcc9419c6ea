"""``socket:///path/to/polyjobs.sock``: a backend served by another polyjobs process.

Every call of the contract is one :mod:`polyjobs.wire` request on a Unix socket to the
process that serves its backend (:func:`polyjobs.serve.serve_backend`, e.g. a
``polyjobs start --backend memory://``). Calls run concurrently; the capabilities are the
served backend's, plus ``shared`` (every process that connects sees the same jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polyjobs import wire
from polyjobs.backend import (
    CAP_SHARED,
    AddResult,
    CancelOutcome,
    ControlMessage,
    Dependencies,
    Finish,
    FinishResult,
    FlowNode,
    JobRecord,
    JobRef,
    JobState,
    MinuteMetrics,
    NewJob,
    ScheduleRecord,
    Stalled,
    WorkerInfo,
)
from polyjobs.errors import BackendError, BackendUnavailableError, InvalidArgumentError
from polyjobs.options import RateLimit
from polyjobs.serve import HELLO, MAX_LINE


def parse_url(url: str) -> Path:
    scheme, sep, rest = url.partition("://")
    if scheme != "socket" or not sep or not rest.startswith("/"):
        raise InvalidArgumentError(f"not a socket:///absolute/path URL: {url!r}")
    return Path(rest)


class SocketBackend:
    """The backend a polyjobs process serves at a Unix socket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.socket_path = parse_url(url)
        self.capabilities: frozenset[str] = frozenset()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._listener: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<SocketBackend {self.socket_path}>"

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                self.socket_path, limit=MAX_LINE
            )
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise BackendUnavailableError(
                f"no polyjobs process answers at {self.socket_path}: {reason}"
            ) from None
        self._listener = asyncio.create_task(self._listen(self._reader))
        hello = await self._call(HELLO)
        self.capabilities = frozenset(hello["capabilities"]) | {CAP_SHARED}

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        self._fail_pending(
            BackendUnavailableError(f"the connection to {self.socket_path} was closed")
        )

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                message = json.loads(line)
                future = self._pending.pop(message.get("id"), None)
                if future is None or future.done():
                    continue
                if "error" in message:
                    future.set_exception(wire.error_from(message["error"]))
                else:
                    future.set_result(message.get("result"))
        except (ConnectionError, ValueError):
            pass
        self._fail_pending(
            BackendUnavailableError(f"the polyjobs process serving {self.socket_path} went away")
        )

    async def _call(self, method: str, *args: Any) -> Any:
        if self._writer is None:
            raise BackendError(f"the backend at {self.socket_path} is not open")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            async with self._lock:
                self._writer.write(wire.request(call_id, method, args))
                await self._writer.drain()
        except (ConnectionError, OSError):
            self._pending.pop(call_id, None)
            raise BackendUnavailableError(
                f"the polyjobs process serving {self.socket_path} went away"
            ) from None
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    async def _typed(self, method: str, *args: Any) -> Any:
        return wire.decode(await self._call(method, *args), wire.SIGNATURES[method].result)

    # -- producers -------------------------------------------------------------------------
    async def add(self, queue: str, jobs: Sequence[NewJob]) -> list[AddResult]:
        return list(await self._typed("add", queue, list(jobs)))

    # -- workers ---------------------------------------------------------------------------
    async def fetch(
        self, queue: str, token: str, limit: int, lease: float, block: float
    ) -> list[JobRecord]:
        return list(await self._typed("fetch", queue, token, limit, lease, block))

    async def extend(
        self, queue: str, token: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        return list(await self._typed("extend", queue, token, list(job_ids), lease))

    async def finish(
        self, queue: str, token: str, finishes: Sequence[Finish], fetch: int, lease: float
    ) -> FinishResult:
        result: FinishResult = await self._typed(
            "finish", queue, token, list(finishes), fetch, lease
        )
        return result

    async def release(self, queue: str, token: str, job_ids: Sequence[str] | None) -> list[str]:
        ids = None if job_ids is None else list(job_ids)
        return list(await self._typed("release", queue, token, ids))

    async def recover_stalled(self, queue: str, max_stalls: int) -> list[Stalled]:
        return list(await self._typed("recover_stalled", queue, max_stalls))

    async def update_progress(self, queue: str, job_id: str, progress_json: str) -> bool:
        return bool(await self._typed("update_progress", queue, job_id, progress_json))

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        return int(await self._typed("add_log", queue, job_id, line, keep))

    # -- inspection ------------------------------------------------------------------------
    async def get_job(self, queue: str, job_id: str) -> JobRecord | None:
        job: JobRecord | None = await self._typed("get_job", queue, job_id)
        return job

    async def get_logs(self, queue: str, job_id: str, start: int, end: int) -> list[str]:
        return list(await self._typed("get_logs", queue, job_id, start, end))

    async def list_jobs(self, queue: str, state: JobState, start: int, end: int) -> list[JobRecord]:
        return list(await self._typed("list_jobs", queue, state, start, end))

    async def counts(self, queue: str) -> dict[str, int]:
        return dict(await self._typed("counts", queue))

    async def queues(self) -> list[str]:
        return list(await self._typed("queues"))

    # -- administration --------------------------------------------------------------------
    async def pause(self, queue: str) -> None:
        await self._call("pause", queue)

    async def resume(self, queue: str) -> None:
        await self._call("resume", queue)

    async def is_paused(self, queue: str) -> bool:
        return bool(await self._typed("is_paused", queue))

    async def drain(self, queue: str, delayed: bool) -> int:
        return int(await self._typed("drain", queue, delayed))

    async def clean(self, queue: str, state: JobState, grace: float, limit: int) -> list[str]:
        return list(await self._typed("clean", queue, state, grace, limit))

    async def remove(self, queue: str, job_id: str) -> bool:
        return bool(await self._typed("remove", queue, job_id))

    async def retry(self, queue: str, job_id: str) -> bool:
        return bool(await self._typed("retry", queue, job_id))

    async def promote(self, queue: str, job_id: str) -> bool:
        return bool(await self._typed("promote", queue, job_id))

    async def obliterate(self, queue: str) -> None:
        await self._call("obliterate", queue)

    # -- schedules -------------------------------------------------------------------------
    async def save_schedule(self, queue: str, schedule: ScheduleRecord) -> ScheduleRecord:
        stored: ScheduleRecord = await self._typed("save_schedule", queue, schedule)
        return stored

    async def get_schedules(self, queue: str) -> list[ScheduleRecord]:
        return list(await self._typed("get_schedules", queue))

    async def remove_schedule(self, queue: str, key: str) -> bool:
        return bool(await self._typed("remove_schedule", queue, key))

    async def advance_schedule(
        self, queue: str, key: str, expected_next: float, next_run: float, jobs: Sequence[NewJob]
    ) -> bool:
        return bool(
            await self._typed("advance_schedule", queue, key, expected_next, next_run, list(jobs))
        )

    # -- worker registry -------------------------------------------------------------------
    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        await self._call("heartbeat", info, ttl)

    async def unregister(self, queue: str, worker_id: str) -> None:
        await self._call("unregister", queue, worker_id)

    async def list_workers(self, queue: str) -> list[WorkerInfo]:
        return list(await self._typed("list_workers", queue))

    # -- rate limits (when the served backend has them) ------------------------------------
    async def set_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        await self._call("set_rate_limit", queue, limit)

    async def get_rate_limit(self, queue: str) -> RateLimit | None:
        limit: RateLimit | None = await self._typed("get_rate_limit", queue)
        return limit

    async def hold(self, queue: str, until: float) -> None:
        await self._call("hold", queue, until)

    # -- control (when the served backend has it) ------------------------------------------
    async def send_control(self, command: str, payload_json: str) -> ControlMessage:
        message: ControlMessage = await self._typed("send_control", command, payload_json)
        return message

    async def control_messages(self, since: float) -> list[ControlMessage]:
        return list(await self._typed("control_messages", since))

    # -- flows and deduplication windows (when the served backend has them) ---------------------
    async def add_flow(self, nodes: Sequence[FlowNode]) -> list[AddResult]:
        return list(await self._typed("add_flow", list(nodes)))

    async def get_dependencies(self, queue: str, job_id: str) -> Dependencies:
        result: Dependencies = await self._typed("get_dependencies", queue, job_id)
        return result

    async def get_parents(self, queue: str, job_id: str) -> list[JobRef]:
        return list(await self._typed("get_parents", queue, job_id))

    async def get_deduplication(self, queue: str, dedup_id: str) -> str | None:
        result: str | None = await self._typed("get_deduplication", queue, dedup_id)
        return result

    async def remove_deduplication(self, queue: str, dedup_id: str) -> bool:
        return bool(await self._typed("remove_deduplication", queue, dedup_id))

    async def get_metrics(self, queue: str, since: float) -> list[MinuteMetrics]:
        return list(await self._typed("get_metrics", queue, since))

    # -- fleet-wide concurrency (when the served backend has it) ----------------------------
    async def set_global_concurrency(self, queue: str, limit: int | None) -> None:
        await self._call("set_global_concurrency", queue, limit)

    async def get_global_concurrency(self, queue: str) -> int | None:
        limit: int | None = await self._typed("get_global_concurrency", queue)
        return limit

    # -- groups (when the served backend has them) -------------------------------------------
    async def set_group_concurrency(self, queue: str, limit: int | None) -> None:
        await self._call("set_group_concurrency", queue, limit)

    async def get_group_concurrency(self, queue: str) -> int | None:
        limit: int | None = await self._typed("get_group_concurrency", queue)
        return limit

    async def set_group_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        await self._call("set_group_rate_limit", queue, limit)

    async def get_group_rate_limit(self, queue: str) -> RateLimit | None:
        limit: RateLimit | None = await self._typed("get_group_rate_limit", queue)
        return limit

    async def hold_group(self, queue: str, group: str, until: float) -> None:
        await self._call("hold_group", queue, group, until)

    # -- cancelling (when the served backend can) -------------------------------------------
    async def cancel(
        self, queue: str, job_id: str, reason: str, now: float
    ) -> CancelOutcome | None:
        outcome: CancelOutcome | None = await self._typed("cancel", queue, job_id, reason, now)
        return outcome

    async def cancel_requests(self, queue: str, job_ids: Sequence[str]) -> dict[str, str]:
        return dict(await self._typed("cancel_requests", queue, list(job_ids)))
