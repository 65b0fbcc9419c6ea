"""Job groups on Redis beyond the contract suite: key layout, obliteration, and the flows
that do not take groups yet."""

from __future__ import annotations

import pytest

from polyjobs import InvalidArgumentError, Queue
from polyjobs.backends.redis import RedisBackend
from polyjobs.flow import FlowProducer


async def test_group_keys_share_the_queue_tag_and_go_with_it(
    backend: RedisBackend, prefix: str
) -> None:
    queue = Queue("grouped", backend)
    await queue.set_group_concurrency(1)
    await queue.set_group_rate_limit("5/1s")
    await queue.add_bulk([("x", i, {"group": f"g{i % 3}"}) for i in range(9)])
    await queue.add("plain", 0)
    await queue.hold_group("g2", 30)
    taken = await backend.fetch("grouped", "w", 10, 30, 0)
    assert sorted(j.opts.get("group", "") for j in taken) == ["", "g0", "g1"]
    keys = {k async for k in backend.redis.scan_iter(match=f"{prefix}:*")}
    keys.discard(f"{prefix}:queues")
    assert all(k.startswith(f"{prefix}:{{grouped}}:") for k in keys)
    names = {k.removeprefix(f"{prefix}:{{grouped}}:") for k in keys}
    assert {"gsv", "gact", "ghold", "gw:g0", "gst:g0"} <= names, names
    assert (await queue.counts())["waiting"] == 7
    assert len(await queue.jobs("waiting")) == 7
    assert [j.data for j in await queue.jobs("waiting", 0, 1)] == [3, 6]  # g0 first, by name
    await backend.obliterate("grouped")
    assert not [k async for k in backend.redis.scan_iter(match=f"{prefix}:*")]


async def test_a_flow_with_a_grouped_job_is_refused(backend: RedisBackend) -> None:
    flows = FlowProducer(backend)
    with pytest.raises(InvalidArgumentError, match="no group"):
        await flows.add(
            {
                "name": "parent",
                "queue": "f",
                "children": [{"name": "child", "queue": "f", "opts": {"group": "a"}}],
            }
        )
    assert await backend.queues() == []
