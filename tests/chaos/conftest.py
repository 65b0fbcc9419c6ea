"""Fixtures of the chaos suite: Redis servers the tests start, prefixes on the shared Redis,
and the ``chaos`` marker for the longest scenarios (they run by default; ``-m chaos`` picks
them, ``-m "not chaos"`` skips them)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from polyjobs.backends.redis.testing import require_redis
from tests.chaos.chaos_support import HERE, MAIN_REDIS
from tests.redis.servers import redis_server

__all__ = ["redis_server"]  # the fixture, shared with tests/redis


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: a long fault-injection scenario of tests/chaos (runs by default)"
    )


@pytest.fixture
def main_prefix() -> Iterator[str]:
    """A key prefix of its own on the shared Redis at 127.0.0.1:6379, deleted afterwards."""
    require_redis(MAIN_REDIS)
    prefix = f"chaos-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(MAIN_REDIS)
    try:
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment for `polyjobs` subprocesses: no inherited polyjobs settings, the chaos
    plugin loaded, a state directory of its own."""
    for name in list(os.environ):
        if name.startswith(("POLYJOBS_", "BULLMQ_")) or name in (
            "REDIS_URL",
            "DISCORD_WEBHOOK_URL",
        ):
            monkeypatch.delenv(name)
    return {
        **os.environ,
        "POLYJOBS_HOME": str(tmp_path / "state"),
        "POLYJOBS_PLUGINS": "chaos_plugin",
        "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONUNBUFFERED": "1",
    }
