"""Sandboxed processors: plain functions run in a pool of child processes.

An asyncio timeout cannot stop blocking code in a thread. With ``Worker(..., sandbox=True)`` a
plain (sync) processor runs in a child process instead: on timeout the child is killed and
replaced, a child that crashes (segfault, ``os._exit``, out of memory) fails only its job, and
``job.update_progress`` / ``job.log`` work from the child. Children are recycled after
``sandbox_max_jobs`` jobs to bound memory.

Parent and child speak JSON lines (never pickle) over the child's stdin and a dedicated
stdout; the child's own ``print`` output goes to stderr. The processor is imported in the child
by reference (``module:qualname``), so it must be a module-level function.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polyjobs import codec
from polyjobs.errors import (
    GroupRateLimitError,
    InvalidArgumentError,
    PolyjobsError,
    RateLimitError,
    RetryAfter,
    UnrecoverableError,
)

if TYPE_CHECKING:
    from polyjobs.job import Job

log = logging.getLogger(__name__)
CHILD_MODULE = "polyjobs.sandbox_child"
LINE_LIMIT = 64 * 1024 * 1024


class SandboxError(PolyjobsError):
    """A sandboxed processor raised, or its child process died. ``stack`` is the child's
    traceback when there is one."""

    def __init__(self, message: str, stack: str | None = None) -> None:
        super().__init__(message)
        self.stack = stack


def processor_ref(processor: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function, for the child to import."""
    module = getattr(processor, "__module__", None)
    qualname = getattr(processor, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise InvalidArgumentError(
            f"a sandboxed processor must be a module-level function importable by the child "
            f"process, not {processor!r}"
        )
    return f"{module}:{qualname}"


class _Child:
    """One child process and its protocol streams."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.jobs_run = 0

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()

    async def receive(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            return None
        message: dict[str, Any] = json.loads(line)
        return message

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def stop(self) -> None:
        """Ask the child to exit (stdin closed); kill it if it does not within a second."""
        if self.alive and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 1.0)
        except TimeoutError:
            self.kill()
            await self.proc.wait()


class SandboxPool:
    """Up to ``size`` child processes running ``ref`` (``module:qualname``)."""

    def __init__(self, ref: str, size: int, max_jobs: int | None = None) -> None:
        self.ref = ref
        self.size = size
        self.max_jobs = max_jobs
        self._idle: list[_Child] = []
        self._all: set[_Child] = set()
        self._closed = False

    async def _spawn(self) -> _Child:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            CHILD_MODULE,
            self.ref,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=LINE_LIMIT,
        )
        child = _Child(proc)
        self._all.add(child)
        return child

    async def _acquire(self) -> _Child:
        while self._idle:
            child = self._idle.pop()
            if child.alive:
                return child
            self._all.discard(child)
        return await self._spawn()

    async def _release(self, child: _Child) -> None:
        if self._closed or not child.alive:
            self._all.discard(child)
            child.kill()
            return
        if self.max_jobs is not None and child.jobs_run >= self.max_jobs:
            self._all.discard(child)
            await child.stop()
            return
        self._idle.append(child)

    async def run(self, job: Job) -> Any:
        """Run ``job`` in a child; return its result or raise what the processor raised."""
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        child = await self._acquire()
        try:
            result = await self._exchange(child, job)
        except BaseException:
            # A timeout (cancellation) or a broken child: the child may be mid-job; kill it.
            self._all.discard(child)
            child.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(child.proc.wait())
            raise
        child.jobs_run += 1
        await self._release(child)
        return result

    async def _exchange(self, child: _Child, job: Job) -> Any:
        await child.send(
            {
                "op": "run",
                "job": {
                    "id": job.id,
                    "name": job.name,
                    "queue": job.queue_name,
                    "data": job.data,
                    "opts": job.opts,
                    "attempts_made": job.attempts_made,
                },
            }
        )
        while True:
            message = await child.receive()
            if message is None:
                code = await child.proc.wait()
                raise SandboxError(f"sandbox process running job {job.id} {_describe_exit(code)}")
            op = message.get("op")
            if op == "progress":
                await job.update_progress(message.get("value"))
            elif op == "log":
                await job.log(str(message.get("text", "")))
            elif op == "done":
                return codec.decode(message.get("result_json"))
            elif op == "error":
                raise _error_from(message)

    async def close(self) -> None:
        """Stop every child (kill those that do not exit promptly)."""
        self._closed = True
        children, self._all, self._idle = list(self._all), set(), []
        await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code} before finishing"


def _error_from(message: dict[str, Any]) -> BaseException:
    kind = message.get("kind")
    text = str(message.get("message") or message.get("type") or "error")
    stack = message.get("stack")
    if kind == "unrecoverable":
        return UnrecoverableError(text)
    if kind == "retry_after":
        return RetryAfter(float(message.get("seconds") or 0.0), text)
    if kind == "rate_limit":
        return RateLimitError(float(message.get("seconds") or 0.0), text)
    if kind == "group_rate_limit":
        return GroupRateLimitError(float(message.get("seconds") or 0.0), text)
    return SandboxError(f"{message.get('type', 'Error')}: {text}", stack)
