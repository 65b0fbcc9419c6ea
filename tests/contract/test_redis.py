"""The backend contract suite against a real Redis server (``REDIS_URL`` or 127.0.0.1:6379/0).

Every test runs on its own queue name, so the suite does not disturb other data in that
database. Without a Redis server the tests skip locally and fail when ``CI`` is set.
"""

from __future__ import annotations

import os

import pytest

from polyjobs.backends.redis.testing import require_redis
from polyjobs.testing import BackendContract

URL = os.environ.get("POLYJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0?prefix=pjtest")


@pytest.fixture(autouse=True, scope="module")
def _redis_answers() -> None:
    require_redis(URL)


class TestRedisBackend(BackendContract):
    url = URL
