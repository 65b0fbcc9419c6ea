"""Fixtures of the chaos suite: Redis servers the tests start, prefixes on the shared Redis,
and the ``chaos`` marker for the longest scenarios (they run by default; ``-m chaos`` picks
them, ``-m "not chaos"`` skips them)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from polyjobs.backends.redis.testing import RedisServer, require_redis
from tests.chaos.chaos_support import HERE, MAIN_REDIS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: a long fault-injection scenario of tests/chaos (runs by default)"
    )


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        message = f"{binary} is not on PATH"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


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
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers of this test on spare ports (``RedisServer`` keywords); all are
    killed afterwards."""
    _need("redis-server")
    started: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        folder = tmp_path / f"redis{len(started)}"
        folder.mkdir()
        server = RedisServer(folder, **kwargs)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()


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
