"""The in-process backend, ``memory://``."""

from __future__ import annotations

from collections.abc import Mapping

from polyjobs.backends.memory.backend import MemoryBackend
from polyjobs.hookspecs import BackendFactory, hookimpl

__all__ = ["MemoryBackend"]


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"memory": MemoryBackend}
