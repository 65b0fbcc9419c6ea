"""PostgreSQL has no job groups yet: it does not claim them, and a job with a group is
refused in one line, never stored without its group."""

from __future__ import annotations

import pytest

from polyjobs import Queue, open_backend
from polyjobs.backend import CAP_GROUPS
from polyjobs.errors import ConfigError


async def test_a_grouped_job_is_refused_not_ignored(pg_url: str) -> None:
    async with open_backend(pg_url) as backend:
        assert CAP_GROUPS not in backend.capabilities
        queue = Queue("grouped", backend)
        with pytest.raises(ConfigError, match="does not support job groups"):
            await queue.add("j", 1, group="wallet-0xabc")
        with pytest.raises(ConfigError, match="does not support job groups"):
            await queue.add_bulk([("j", 1, {"group": "a"})])
        with pytest.raises(ConfigError, match="does not support job groups"):
            await queue.set_group_concurrency(1)
        assert (await queue.counts())["waiting"] == 0
        assert await queue.group_concurrency() is None
