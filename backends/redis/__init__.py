"""The Redis backend: ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs.

The backend module (and redis-py) is imported when a Redis URL is opened, not when the
plugin is registered: a command on another backend does not pay for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from polyjobs.hookspecs import BackendFactory, hookimpl

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        return importlib.import_module("polyjobs.backends.redis.backend").RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _open(url: str) -> Backend:
    from polyjobs.backends.redis.backend import RedisBackend

    return RedisBackend(url)


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"redis": _open, "rediss": _open, "unix": _open}
