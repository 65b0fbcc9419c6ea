"""Job groups on Redis beyond the contract suite: key layout, obliteration, flows across
queues."""

from __future__ import annotations

import time

from polyjobs import Queue
from polyjobs.backend import Finish
from polyjobs.backends.redis import RedisBackend
from polyjobs.flow import FlowProducer


async def test_group_keys_share_the_queue_tag_and_go_with_it(
    backend: RedisBackend, prefix: str
) -> None:
    queue = Queue("grouped", backend)
    await queue.set_group_concurrency(1)
    await queue.set_group_rate_limit("5/60s")  # its starts are kept 61 s, not 2 s
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


async def test_a_flow_puts_grouped_jobs_of_other_queues_in_their_groups(
    backend: RedisBackend, prefix: str
) -> None:
    child = {"name": "c", "queue": "flow-c", "opts": {"group": "x"}}
    await FlowProducer(backend).add(
        {"name": "p", "queue": "flow-p", "opts": {"group": "y"}, "children": [child]}
    )
    assert await backend.redis.exists(f"{prefix}:{{flow-c}}:gw:x") == 1
    assert (await Queue("flow-c", backend).counts())["waiting"] == 1
    taken = await backend.fetch("flow-c", "w", 9, 30, 0)
    assert [j.opts["group"] for j in taken] == ["x"]
    await backend.finish("flow-c", "w", [Finish(taken[0].id, "completed", 1, time.time())], 0, 30)
    # the parent, released by the child's finish in the other queue, waits in its own group
    assert await backend.redis.exists(f"{prefix}:{{flow-p}}:gw:y") == 1
    parent = await backend.fetch("flow-p", "w", 9, 30, 0)
    assert [j.opts["group"] for j in parent] == ["y"]


async def test_a_group_with_nothing_left_is_forgotten(backend: RedisBackend, prefix: str) -> None:
    queue = Queue("forget", backend)
    await queue.add_bulk([("j", i, {"group": f"wallet-{i}"}) for i in range(50)])
    gsv = f"{prefix}:{{forget}}:gsv"
    assert await backend.redis.hlen(gsv) == 50
    taken = await backend.fetch("forget", "w", 50, 30, 0)
    assert len(taken) == 50
    now = time.time()
    await backend.finish("forget", "w", [Finish(j.id, "completed", 1, now) for j in taken], 0, 30)
    assert await backend.redis.hlen(gsv) == 0  # so listing or draining never walks them
    await queue.add("j", "back", group="wallet-3")
    assert [j.data for j in await backend.fetch("forget", "w", 9, 30, 0)] == ["back"]
