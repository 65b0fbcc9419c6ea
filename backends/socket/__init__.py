"""``socket:///path``: reach the backend another polyjobs process serves (see
:mod:`polyjobs.serve`)."""

from __future__ import annotations

from collections.abc import Mapping

from polyjobs.backends.socket.client import SocketBackend
from polyjobs.hookspecs import BackendFactory, hookimpl

__all__ = ["SocketBackend"]


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"socket": SocketBackend}
