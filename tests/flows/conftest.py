"""Backends for the flow and window stress tests: memory, a fresh SQLite file, and the shared
Redis under a prefix of the test's own (deleted afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from polyjobs.backends.redis.testing import require_redis

MAIN_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stress.db'}"
    else:
        require_redis(MAIN_REDIS)
        prefix = f"stress-{uuid.uuid4().hex[:10]}"
        yield f"{MAIN_REDIS}?prefix={prefix}"
        client = redis.Redis.from_url(MAIN_REDIS)
        try:
            keys = list(client.scan_iter(f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
