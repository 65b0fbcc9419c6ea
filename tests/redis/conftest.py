"""Fixtures shared by the Redis backend's own tests (on the shared server, own key prefix)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from polyjobs.backends.redis import RedisBackend
from tests.redis.servers import redis_server

__all__ = ["redis_server"]  # the fixture: redis-servers a test starts for itself

URL = os.environ.get("POLYJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix() -> str:
    return f"pjt{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def backend(prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(f"{URL}?prefix={prefix}")
    await b.open()
    try:
        yield b
    finally:
        keys = [k async for k in b.redis.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await b.redis.delete(*keys)
        await b.close()
