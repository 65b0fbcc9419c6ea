"""The rate-limit contract on memory:// (until it joins BackendContract for every backend)."""

from __future__ import annotations

from polyjobs.testing.suite_ratelimit import RateLimitContract


class TestMemoryRateLimit(RateLimitContract):
    url = "memory://"
