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
