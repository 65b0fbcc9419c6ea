"""The Redis backend: ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs."""

from __future__ import annotations

from collections.abc import Mapping

from polyjobs.backends.redis.backend import RedisBackend
from polyjobs.hookspecs import BackendFactory, hookimpl

__all__ = ["RedisBackend"]


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"redis": RedisBackend, "rediss": RedisBackend, "unix": RedisBackend}
