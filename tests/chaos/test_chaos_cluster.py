"""Scenario 5: the whole backend contract suite on a three-primary Redis Cluster that this
module starts on loopback ports (``redis-server --cluster-enabled yes`` x3, then
``redis-cli --cluster create``), through the backend's ``?cluster=true`` URL.

The cluster itself comes from ``polyjobs.backends.redis.testing.RedisClusterServers``; the
Redis backend's own tests run a smaller cluster test always and this suite only on demand
(``POLYJOBS_TEST_REDIS_CLUSTER=1``). Here it always runs.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import pytest
import pytest_asyncio

from polyjobs.backend import Backend
from polyjobs.backends.redis.testing import RedisClusterServers
from polyjobs.plugins import open_backend
from polyjobs.testing import BackendContract


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not on PATH")
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    servers.start()
    try:
        yield f"{servers.url}&prefix=chaos"
    finally:
        servers.kill()


class TestChaosRedisCluster(BackendContract):
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio, pytest.mark.chaos]

    @pytest_asyncio.fixture
    async def backend(self, redis_cluster: str) -> AsyncIterator[Backend]:
        type(self).url = redis_cluster  # what open_other() opens
        async with open_backend(redis_cluster) as opened:
            yield opened
