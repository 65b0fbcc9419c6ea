"""Known failures of one backend against the shared contract suite.

The suite never skips by backend name; a backend that fails a contract test is listed here,
by test id, with the reason, as a strict ``xfail``: the suite stays green, and the entry must
go when the backend is fixed (a strict xfail that passes fails the run).
"""

from __future__ import annotations

import pytest

_REDIS_SAME_DUE_TIME = (
    "redis backend bug: jobs due at the same time (e.g. add_bulk with one delay) leave the "
    "delayed set in lexicographic id order (1, 10, 11, 12, 2, ...), not in the order added: "
    "the delayed zset is scored by run_at alone"
)

KNOWN_FAILURES: dict[str, str] = {
    "test_redis.py::TestRedisBackend::test_jobs_due_at_the_same_time_keep_their_order": (
        _REDIS_SAME_DUE_TIME
    ),
    "test_redis.py::TestRedisClusterBackend::test_jobs_due_at_the_same_time_keep_their_order": (
        _REDIS_SAME_DUE_TIME
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for suffix, reason in KNOWN_FAILURES.items():
            if item.nodeid.endswith(suffix):
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
