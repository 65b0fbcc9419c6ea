"""Redis servers a test starts for itself (faults, outages, auth, TLS, memory limits): one
fixture for the Redis tests and the chaos suite alike."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polyjobs.backends.redis.testing import RedisServer


def need(binary: str) -> None:
    """Skip without ``binary`` on PATH; under CI, fail instead."""
    if shutil.which(binary) is None:
        message = f"{binary} is not on PATH"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers of this test on spare ports (``RedisServer`` keywords); all are
    killed afterwards."""
    need("redis-server")
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
