"""Fixtures of the PostgreSQL tests: the shared server (skipped locally when absent, failed in
CI) and a throw-away schema per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polyjobs.backends.postgres.testing import fresh_schema, require_postgres, server_url


@pytest.fixture(scope="session")
def postgres_server() -> str:
    require_postgres(server_url())
    return server_url()


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A URL whose schema is this test's own (made on first open, dropped afterwards)."""
    with fresh_schema(postgres_server) as url:
        yield url
