"""The control-channel contract on memory:// (until it joins BackendContract for every backend)."""

from __future__ import annotations

from polyjobs.testing.suite_control import ControlContract


class TestMemoryControl(ControlContract):
    url = "memory://"
