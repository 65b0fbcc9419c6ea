"""The engine's side of flows and deduplication windows: validation before anything is stored,
and backends that lack the capabilities."""

from __future__ import annotations

from typing import Any

import pytest

from polyjobs import (
    ConfigError,
    Deduplication,
    FlowProducer,
    InvalidArgumentError,
    JobOptions,
    Queue,
    Worker,
)
from polyjobs.backend import CAP_CONTROL, CAP_FLOWS, CAP_RATE_LIMIT
from polyjobs.backends.memory import MemoryBackend


class PlainBackend(MemoryBackend):
    """The in-process backend declaring none of the flow and window capabilities."""

    capabilities = frozenset({CAP_RATE_LIMIT, CAP_CONTROL})


class OneQueueFlows(MemoryBackend):
    capabilities = frozenset({CAP_FLOWS})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"ttl": 1}, "deduplication id"),
        ({"id": ""}, "deduplication id"),
        ({"id": "a b"}, "spaces"),
        ({"id": "a", "extend": True}, "needs a ttl"),
        ({"id": "a", "keep_last_if_active": True, "ttl": 5}, "no ttl"),
        ({"id": "a", "ttl": 0}, "> 0"),
        ({"id": "a", "ttl": "soon"}, "not a duration"),
        ({"id": "a", "replace": "yes"}, "true or false"),
        ({"id": "a", "window": 3}, "unknown deduplication keys"),
        ("a", "mapping"),
    ],
)
def test_bad_deduplication_options(value: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        JobOptions.parse({"deduplication": value})


def test_deduplication_options_round_trip() -> None:
    opts = JobOptions.parse(
        {"deduplication": {"id": "w", "ttl": "2s", "extend": True, "replace": True}}
    )
    assert opts.deduplication == Deduplication("w", 2.0, extend=True, replace=True)
    assert JobOptions.from_json(opts.to_json()) == opts
    policy = JobOptions.parse({"ignore_dependency_on_failure": True})
    assert policy.failure_policy == "ignore"
    assert JobOptions.from_json(policy.to_json()).failure_policy == "ignore"
    with pytest.raises(InvalidArgumentError, match="true or false"):
        JobOptions.parse({"fail_parent_on_failure": 1})


async def test_backends_without_the_capabilities_say_so() -> None:
    backend = PlainBackend()
    queue = Queue("plain", backend)
    with pytest.raises(ConfigError, match="does not support flows"):
        await FlowProducer(backend).add({"name": "p", "queue": "plain"})
    with pytest.raises(ConfigError, match="deduplication windows"):
        await queue.add("j", 1, deduplication={"id": "x"})
    with pytest.raises(ConfigError, match="deduplication windows"):
        await queue.remove_deduplication_key("x")
    assert await queue.deduplication_job_id("x") is None
    assert (await queue.counts())["waiting-children"] == 0
    assert await queue.jobs("waiting-children") == []
    assert await queue.clean("waiting-children") == []
    assert await queue.counts() == {
        "waiting": 0,
        "active": 0,
        "delayed": 0,
        "waiting-children": 0,
        "completed": 0,
        "failed": 0,
        "paused": False,
    }


async def test_a_backend_with_flows_in_one_queue_refuses_a_flow_across_queues() -> None:
    backend = OneQueueFlows()
    flows = FlowProducer(backend)
    with pytest.raises(InvalidArgumentError, match="keeps each flow in one queue"):
        await flows.add({"name": "p", "queue": "a", "children": [{"name": "c", "queue": "b"}]})
    node = await flows.add({"name": "p", "queue": "a", "children": [{"name": "c"}]})
    assert node.children[0].job.queue_name == "a"


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"name": "p"}, "needs a queue"),
        ({"name": "p", "queue": "q", "colour": 1}, "unknown flow node keys"),
        ({"queue": "q"}, "needs a name"),
        ({"queue": "q", "job_id": "x", "data": 1}, "takes only queue and job_id"),
        ({"name": "p", "queue": "q", "children": {"name": "c"}}, "list of nodes"),
        ({"name": "p", "queue": "q", "children": ["c"]}, "must be a mapping"),
        ({"name": "p", "queue": "q", "opts": {"deduplication": {"id": "d"}}}, "deduplication"),
        ({"name": "p", "queue": "q", "job_id": "a", "opts": {"job_id": "b"}}, "two job ids"),
        ({"name": "p", "queue": "bad name"}, "spaces"),
        ({"name": "", "queue": "q"}, "non-empty"),
    ],
)
async def test_bad_flow_nodes_are_refused(node: dict[str, Any], message: str) -> None:
    backend = MemoryBackend()
    with pytest.raises(InvalidArgumentError, match=message):
        await FlowProducer(backend).add(node)
    assert await backend.queues() == []


async def test_a_long_chain_is_added_and_run_in_order() -> None:
    """1,500 levels deep: nothing in the engine recurses per level."""
    backend = MemoryBackend()
    node: dict[str, Any] = {"name": "step", "data": 0}
    for level in range(1, 1500):
        node = {"name": "step", "data": level, "children": [node]}
    top = await FlowProducer(backend).add({**node, "queue": "chain"})
    assert top.job.state == "waiting-children"
    seen: list[int] = []

    async def proc(job: Any) -> None:
        seen.append(job.data)

    await Worker("chain", proc, backend, concurrency=4).run(burst=True)
    assert seen == list(range(1500))


async def test_a_schedule_keeps_its_deduplication_window_for_its_slots() -> None:
    queue = Queue("s", MemoryBackend())
    record = await queue.upsert_schedule("k", every=5, options={"deduplication": {"id": "x"}})
    assert record.opts["deduplication"]["id"] == "x"
    with pytest.raises(InvalidArgumentError, match="deduplication"):
        await queue.upsert_schedule("k", every=5, options={"deduplication": {"ttl": 1}})


async def test_queue_option_defaults_apply_to_flow_nodes() -> None:
    backend = MemoryBackend()
    reports = Queue("reports", backend, default_options={"attempts": 4})
    top = await FlowProducer(backend, queues=[reports]).add(
        {"name": "r", "queue": "reports", "children": [{"name": "c", "queue": "other"}]}
    )
    assert top.job.options.attempts == 4
    assert top.children[0].job.options.attempts == 1
