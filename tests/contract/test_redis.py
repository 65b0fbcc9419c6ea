"""The backend contract suite against a real Redis server (``REDIS_URL`` or 127.0.0.1:6379/0).

Every test runs on its own queue name, so the suite does not disturb other data in that
database. Without a Redis server the tests skip locally and fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from polyjobs.backend import Backend
from polyjobs.backends.redis.testing import RedisClusterServers, require_redis
from polyjobs.errors import InvalidArgumentError
from polyjobs.flow import FlowProducer
from polyjobs.plugins import open_backend
from polyjobs.testing import BackendContract
from polyjobs.testing.suite_cancel import CancelContract
from polyjobs.testing.suite_concurrency import ConcurrencyContract
from polyjobs.testing.suite_control import ControlContract
from polyjobs.testing.suite_dedup import DedupContract
from polyjobs.testing.suite_flows import FlowsContract
from polyjobs.testing.suite_groups import GroupsContract
from polyjobs.testing.suite_ratelimit import RateLimitContract

URL = os.environ.get("POLYJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0?prefix=pjtest")


@pytest.fixture(autouse=True, scope="module")
def _redis_answers() -> None:
    require_redis(URL)


class TestRedisBackend(BackendContract):
    url = URL


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            message = f"{tool} is not on PATH"
            pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    servers.start()
    try:
        yield f"{servers.url}&prefix=pjtest"
    finally:
        servers.kill()


class _OnCluster:
    url = ""

    @pytest_asyncio.fixture
    async def backend(self, redis_cluster: str) -> AsyncIterator[Backend]:
        type(self).url = redis_cluster  # for open_other()
        async with open_backend(redis_cluster) as b:
            yield b


class TestRedisClusterRateLimit(_OnCluster, RateLimitContract):
    """Always on a cluster (a few seconds): the limiter's keys share the queue's slot."""


class TestRedisClusterControl(_OnCluster, ControlContract):
    """The control key has no hash tag: it lives on whichever node owns its slot."""


class TestRedisClusterFlows(_OnCluster, FlowsContract, DedupContract):
    """Each queue in its own slot: flows within one queue and windows work; flows across
    queues are refused (their tests skip: no ``flows-across-queues`` capability)."""

    async def test_a_flow_across_queues_is_refused_with_the_way_out(self, backend: Backend) -> None:
        flows = FlowProducer(backend)
        with pytest.raises(InvalidArgumentError, match="one queue"):
            await flows.add({"name": "p", "queue": "a", "children": [{"name": "c", "queue": "b"}]})
        assert await backend.queues() == []


class TestRedisClusterCancel(_OnCluster, CancelContract, ConcurrencyContract):
    """A cancel (and its flows' settling) and the concurrency cap stay in the queue's slot."""


class TestRedisClusterGroups(_OnCluster, GroupsContract):
    """Every key of a queue's groups carries the queue's hash tag: one slot."""


class TestRedisClusterTaggedFlows(FlowsContract):
    """A prefix with a hash tag puts every queue in one slot: flows across queues work."""

    @pytest_asyncio.fixture
    async def backend(self, redis_cluster: str) -> AsyncIterator[Backend]:
        url = redis_cluster.replace("prefix=pjtest", "prefix={pjtest}")
        type(self).url = url  # for open_other()
        async with open_backend(url) as b:
            yield b


if os.environ.get("POLYJOBS_TEST_REDIS_CLUSTER"):

    class TestRedisClusterBackend(_OnCluster, BackendContract):
        """The whole suite on a three-node Redis Cluster that this module starts (opt-in with
        ``POLYJOBS_TEST_REDIS_CLUSTER=1``: it doubles the Redis suite's time; a smaller
        cluster test always runs in ``tests/redis``)."""
