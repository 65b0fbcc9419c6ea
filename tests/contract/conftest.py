"""Known failures of one backend against the shared contract suite.

The suite never skips by backend name; a backend that fails a contract test is listed here,
by test id, with the reason, as a strict ``xfail``: the suite stays green, and the entry must
go when the backend is fixed (a strict xfail that passes fails the run).
"""

from __future__ import annotations

import pytest

#: ``{test id suffix: reason}``; empty while every backend passes the whole suite.
KNOWN_FAILURES: dict[str, str] = {
    "test_memory.py::TestMemoryBackend::test_an_immediate_retry_keeps_its_priority_turn": (
        "engine race (shows every time on memory://, whose calls never yield): a job's slot "
        "counts as free (Worker._free) as soon as its task ends, while its finish still sits "
        "in the outbox, so the fetch loop takes a lower-priority job before the finish loop "
        "puts the zero-backoff retry back in waiting"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for suffix, reason in KNOWN_FAILURES.items():
            if item.nodeid.endswith(suffix):
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
