"""The backend contract suite against the SQLite backend, one fresh file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import pytest_asyncio

from polyjobs import open_backend
from polyjobs.backend import Backend
from polyjobs.testing import BackendContract


class _FreshFile:
    url = "sqlite:///<a file under tmp_path, set per test>"
    file_url = ""

    @pytest.fixture(autouse=True)
    def _fresh_file(self, tmp_path: Path) -> None:
        # autouse: runs before `backend`; pytest makes one instance per test
        self.file_url = f"sqlite:///{tmp_path}/jobs.db"

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[Backend]:
        async with open_backend(self.file_url) as b:
            yield b

    def open_other(self) -> AbstractAsyncContextManager[Backend]:
        return open_backend(self.file_url)


class TestSqliteBackend(_FreshFile, BackendContract):
    pass
