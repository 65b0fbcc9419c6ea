"""The child side of :mod:`polyjobs.sandbox`: ``python -m polyjobs.sandbox_child module:qualname``.

Reads ``{"op": "run", "job": {...}}`` lines on stdin, runs the processor, and answers on the
original stdout with ``progress`` / ``log`` lines and one ``done`` or ``error`` line per job.
Whatever the processor prints goes to stderr, so it cannot break the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from typing import IO, Any

from polyjobs import codec
from polyjobs.errors import GroupRateLimitError, RateLimitError, RetryAfter, UnrecoverableError


class SandboxJob:
    """What a sandboxed processor gets: the job's fields, ``update_progress`` and ``log``."""

    def __init__(self, fields: dict[str, Any], out: IO[str]) -> None:
        self.id: str = fields["id"]
        self.name: str = fields["name"]
        self.queue_name: str = fields["queue"]
        self.data: Any = fields["data"]
        self.opts: dict[str, Any] = fields["opts"]
        self.attempts_made: int = fields["attempts_made"]
        self.progress: Any = None
        self._out = out

    def update_progress(self, progress: Any) -> None:
        codec.encode(progress, f"progress of job {self.id}")
        self.progress = progress
        _send(self._out, {"op": "progress", "value": progress})

    def log(self, text: str) -> None:
        _send(self._out, {"op": "log", "text": str(text)})

    # the same names as the threaded processor API, so one function can run either way
    update_progress_sync = update_progress
    log_sync = log


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _load(ref: str) -> Any:
    module_name, _, qualname = ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _error(exc: BaseException) -> dict[str, Any]:
    message: dict[str, Any] = {
        "op": "error",
        "type": type(exc).__name__,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(exc)),
        "kind": "error",
    }
    if isinstance(exc, UnrecoverableError):
        message["kind"] = "unrecoverable"
    elif isinstance(exc, RetryAfter | RateLimitError):
        message["kind"] = "retry_after" if isinstance(exc, RetryAfter) else "rate_limit"
        if isinstance(exc, GroupRateLimitError):
            message["kind"] = "group_rate_limit"
        message["seconds"] = exc.seconds
    return message


def main(ref: str) -> None:
    # The parent decides when a child stops (stdin closed, or a kill on timeout); a Ctrl-C
    # aimed at the worker's process group must not kill children mid-job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the processor's prints go to stderr
    sys.stdout = sys.stderr
    processor = _load(ref)
    for line in sys.stdin:
        request = json.loads(line)
        job = SandboxJob(request["job"], out)
        try:
            result = processor(job)
            _send(out, {"op": "done", "result_json": codec.encode(result, f"result of {job.id}")})
        except Exception as exc:
            _send(out, _error(exc))


if __name__ == "__main__":
    main(sys.argv[1])
