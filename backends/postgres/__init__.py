"""The PostgreSQL backend: ``postgresql://`` and ``postgres://`` URLs (the ``postgres`` extra).

The scheme is registered even without the driver, so that a URL names a clear remedy instead
of "unknown scheme": building the backend without asyncpg installed raises ``ConfigError``
naming the extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from polyjobs.errors import ConfigError
from polyjobs.hookspecs import BackendFactory, hookimpl

if TYPE_CHECKING:
    from polyjobs.backends.postgres.backend import PostgresBackend

MISSING_DRIVER = "the PostgreSQL backend needs the asyncpg driver: pip install 'polyjobs[postgres]'"


def make_backend(url: str) -> PostgresBackend:
    """Build (not open) the backend for a ``postgresql://`` URL."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING_DRIVER) from None
    from polyjobs.backends.postgres.backend import PostgresBackend

    return PostgresBackend(url)


@hookimpl
def polyjobs_backend_factories() -> Mapping[str, BackendFactory]:
    return {"postgresql": make_backend, "postgres": make_backend}
