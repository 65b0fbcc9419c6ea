"""Test support shipped with polyjobs: the backend contract suite.

``from polyjobs.testing import BackendContract`` and subclass it with a ``url``; see
:mod:`polyjobs.testing.contract`. Needs the ``test`` extra (pytest, pytest-asyncio).
"""

from __future__ import annotations

import pytest

# Detailed assertion messages in the suite's own modules (pytest rewrites only test modules
# and conftest files unless told); must run before those modules are imported.
pytest.register_assert_rewrite(
    "polyjobs.testing.contract",
    "polyjobs.testing.faults",
    "polyjobs.testing.support",
    "polyjobs.testing.suite_adding",
    "polyjobs.testing.suite_admin",
    "polyjobs.testing.suite_control",
    "polyjobs.testing.suite_dedup",
    "polyjobs.testing.suite_flows",
    "polyjobs.testing.suite_ratelimit",
    "polyjobs.testing.suite_retries",
    "polyjobs.testing.suite_schedules",
    "polyjobs.testing.suite_state",
    "polyjobs.testing.suite_validation",
    "polyjobs.testing.suite_workers",
)

from polyjobs.testing.contract import BackendContract  # noqa: E402
from polyjobs.testing.support import ContractBase, Recorder, wait_until  # noqa: E402

__all__ = ["BackendContract", "ContractBase", "Recorder", "wait_until"]
