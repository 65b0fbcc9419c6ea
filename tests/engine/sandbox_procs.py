"""Module-level processors for the sandbox tests (the child process imports them by name)."""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

from polyjobs import UnrecoverableError


def sleepy(job: Any) -> str:
    time.sleep(float(job.data.get("seconds", 60)))
    return "woke"


def pid(job: Any) -> int:
    return os.getpid()


def exits(job: Any) -> None:
    os._exit(int(job.data.get("code", 1)))


def segfault(job: Any) -> None:
    ctypes.string_at(0)


def chatty(job: Any) -> str:
    print("this goes to stderr, not into the protocol")
    for step in (25, 50, 100):
        job.update_progress(step)
        job.log(f"step {step}")
    return "done"


def raises(job: Any) -> None:
    if job.data.get("unrecoverable"):
        raise UnrecoverableError("no point retrying")
    raise ValueError(f"bad input {job.data.get('n')}")


def webhook_429(job: Any) -> str:
    """A Discord 429 for one webhook on the first run of a job whose ``limited`` names a file
    that does not exist yet (the first run makes it)."""
    from polyjobs import GroupRateLimitError

    mark = job.data.get("limited")
    if mark and not os.path.exists(mark):
        open(mark, "w").close()
        raise GroupRateLimitError(0.7, "429 for this webhook")
    return f"sent {job.data['n']}"
