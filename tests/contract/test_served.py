"""The backend contract suite against a backend reached over a local socket: a memory backend
served by :func:`polyjobs.serve.serve_backend`, called through ``socket://`` (JSON messages)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest_asyncio

from polyjobs.backend import Backend
from polyjobs.backends.memory import MemoryBackend
from polyjobs.plugins import open_backend
from polyjobs.serve import serve_backend, socket_url
from polyjobs.testing import BackendContract


class TestServedMemoryBackend(BackendContract):
    served_url = ""

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[Backend]:
        # a short directory: a Unix socket path has at most 107 bytes
        with tempfile.TemporaryDirectory(prefix="pj-") as home:
            memory = MemoryBackend()
            async with serve_backend(memory, Path(home) / "polyjobs.sock") as path:
                self.served_url = socket_url(path)
                async with open_backend(self.served_url) as client:
                    yield client
            await memory.close()

    def open_other(self) -> AbstractAsyncContextManager[Backend]:
        return open_backend(self.served_url)
