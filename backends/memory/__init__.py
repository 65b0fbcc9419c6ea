"""The in-process backend, ``memory://``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from polyjobs.hookspecs import BackendFactory, hookimpl

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.backends.memory.backend import MemoryBackend

__all__ = ["MemoryBackend"]


def __getattr__(name: str) -> Any:
    """The backend module is imported when a memory:// URL is opened, not when the plugin is
    registered: a command on another backend does not pay for it."""
    if name == "MemoryBackend":
        return importlib.import_module("polyjobs.backends.memory.backend").MemoryBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _open(url: str) -> Backend:
    from polyjobs.backends.memory.backend import MemoryBackend

    return MemoryBackend(url)


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"memory": _open}
