"""Test support for the Redis backend: a reachability check that fails (not skips) in CI."""

from __future__ import annotations

import os

import pytest
import redis

from polyjobs.backends.redis.connection import RedisUrl
from polyjobs.redact import redact_url


def require_redis(url: str) -> None:
    """Skip the calling test when Redis at ``url`` does not answer, or fail it when the
    ``CI`` environment variable is set (CI never skips the Redis tests)."""
    try:
        client = redis.Redis.from_url(
            RedisUrl.parse(url).url, socket_connect_timeout=1.0, socket_timeout=1.0
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        message = f"Redis at {redact_url(url)} does not answer: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
