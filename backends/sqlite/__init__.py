"""The embedded durable backend, ``sqlite:///path/to.db``: one file, several processes."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from polyjobs.hookspecs import BackendFactory, hookimpl

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.backends.sqlite.backend import SqliteBackend

__all__ = ["SqliteBackend"]


def __getattr__(name: str) -> Any:
    """The backend module is imported when a sqlite:// URL is opened, not when the plugin is
    registered: a command on another backend does not pay for it."""
    if name == "SqliteBackend":
        return importlib.import_module("polyjobs.backends.sqlite.backend").SqliteBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _open(url: str) -> Backend:
    from polyjobs.backends.sqlite.backend import SqliteBackend

    return SqliteBackend(url)


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"sqlite": _open}
