"""The backend contract suite against a real PostgreSQL server (``POLYJOBS_TEST_POSTGRES_URL``
or the ``test`` database on 127.0.0.1:5432).

The module works in a schema of its own (``pjtest_<hex>``), made by the backend's migrations
on first use and dropped at the end; every test runs on its own queue name. Without a server
the tests skip locally and fail when ``CI`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from polyjobs.backend import Backend
from polyjobs.backends.postgres.testing import fresh_schema, require_postgres, server_url
from polyjobs.plugins import open_backend
from polyjobs.testing import BackendContract


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    require_postgres(server_url())
    with fresh_schema(server_url()) as url:
        yield url


class TestPostgresBackend(BackendContract):
    url = ""

    @pytest_asyncio.fixture
    async def backend(self, postgres_url: str) -> AsyncIterator[Backend]:
        type(self).url = postgres_url  # for open_other()
        async with open_backend(postgres_url) as b:
            yield b
