"""The backend contract suite against the in-process backend."""

from __future__ import annotations

from polyjobs.testing import BackendContract


class TestMemoryBackend(BackendContract):
    url = "memory://"
