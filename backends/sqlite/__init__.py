"""The embedded durable backend, ``sqlite:///path/to.db``: one file, several processes."""

from __future__ import annotations

from collections.abc import Mapping

from polyjobs.backends.sqlite.backend import SqliteBackend
from polyjobs.hookspecs import BackendFactory, hookimpl

__all__ = ["SqliteBackend"]


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"sqlite": SqliteBackend}
