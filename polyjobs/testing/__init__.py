"""Test support shipped with polyjobs: the backend contract suite.

``from polyjobs.testing import BackendContract`` and subclass it with a ``url``; see
:mod:`polyjobs.testing.contract`. Needs the ``test`` extra (pytest, pytest-asyncio).
"""

from __future__ import annotations

from polyjobs.testing.contract import BackendContract
from polyjobs.testing.support import ContractBase, Recorder, wait_until

__all__ = ["BackendContract", "ContractBase", "Recorder", "wait_until"]
