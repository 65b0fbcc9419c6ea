"""``socket:///path``: reach the backend another polyjobs process serves (see
:mod:`polyjobs.serve`)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from polyjobs.hookspecs import BackendFactory, hookimpl

if TYPE_CHECKING:
    from polyjobs.backend import Backend
    from polyjobs.backends.socket.client import SocketBackend

__all__ = ["SocketBackend"]


def __getattr__(name: str) -> Any:
    """The backend module is imported when a socket:// URL is opened, not when the plugin is
    registered: a command on another backend does not pay for it."""
    if name == "SocketBackend":
        return importlib.import_module("polyjobs.backends.socket.client").SocketBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _open(url: str) -> Backend:
    from polyjobs.backends.socket.client import SocketBackend

    return SocketBackend(url)


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"socket": _open}
