"""Contract: flows (``flows``): parents wait in ``waiting-children`` for their children, a job
may have several parents, failure policies, and every removal keeps the edges consistent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from polyjobs.backend import (
    CAP_FLOWS,
    CAP_FLOWS_ACROSS_QUEUES,
    CAP_SHARED,
    Backend,
    Finish,
    JobRef,
)
from polyjobs.errors import InvalidArgumentError
from polyjobs.flow import FlowProducer
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase, Recorder, wait_until


async def _value(job: Job) -> Any:
    """Children return their data; parents return their children's values."""
    values = await job.children_values()
    return values if values else job.data


async def _fail_bad(job: Job) -> Any:
    if job.name == "bad":
        raise ValueError(f"bad {job.data}")
    return await _value(job)


def leaf(name: str, data: Any = None, **opts: Any) -> dict[str, Any]:
    return {"name": name, "data": data, "opts": opts}


class FlowsContract(ContractBase):
    @pytest_asyncio.fixture
    async def other(self, backend: Backend, queue_name: str) -> AsyncIterator[Queue]:
        """A second queue of the test, for flows across queues."""
        name = f"{queue_name}-b"
        yield Queue(name, backend)
        await backend.obliterate(name)

    def flows(self, backend: Backend) -> FlowProducer:
        self.require(backend, CAP_FLOWS)
        return FlowProducer(backend)

    async def test_parent_waits_for_its_children_and_gets_their_values(
        self, backend: Backend, queue: Queue
    ) -> None:
        flow = await self.flows(backend).add(
            {
                "name": "sum",
                "queue": queue.name,
                "children": [leaf("part", 1), leaf("part", 2), leaf("part", 3)],
            }
        )
        parent = flow.job
        assert parent.state == "waiting-children"
        assert [c.job.state for c in flow.children] == ["waiting"] * 3
        counts = await queue.counts()
        assert (counts["waiting-children"], counts["waiting"]) == (1, 3)
        assert [j.id for j in await queue.jobs("waiting-children")] == [parent.id]
        assert (await queue.require_job(parent.id)).state == "waiting-children"
        order = Recorder()

        async def proc(job: Job) -> Any:
            order.add(job.name)
            return await _value(job)

        await self.burst(queue, proc, concurrency=1)
        assert order.items == ["part", "part", "part", "sum"]
        keys = [f"{queue.name}:{c.job.id}" for c in flow.children]
        done = await queue.require_job(parent.id)
        assert done.state == "completed"
        assert done.returnvalue == dict(zip(keys, [1, 2, 3], strict=True))
        assert await done.children_values() == dict(zip(keys, [1, 2, 3], strict=True))
        assert await flow.children[0].job.parents() == [JobRef(queue.name, parent.id)]
        assert (await queue.counts())["waiting-children"] == 0

    async def test_the_last_childs_finish_fetches_the_parent(
        self, backend: Backend, queue: Queue
    ) -> None:
        """The parent moves to waiting in the same atomic step as its last child's finish,
        so that very finish call can hand it out as the worker's next job."""
        flow = await self.flows(backend).add(
            {"name": "parent", "queue": queue.name, "children": [leaf("child")]}
        )
        (child,) = await backend.fetch(queue.name, "tok", 1, 30.0, 0)
        assert child.id == flow.children[0].job.id
        fin = _completed(child.id, attempts=1)
        result = await backend.finish(queue.name, "tok", [fin], 1, 30.0)
        assert result.lost == []
        assert [j.id for j in result.jobs] == [flow.job.id]
        assert result.jobs[0].state == "active"

    async def test_children_in_another_queue(
        self, backend: Backend, queue: Queue, other: Queue
    ) -> None:
        self.require(backend, CAP_FLOWS_ACROSS_QUEUES)
        flow = await self.flows(backend).add(
            {
                "name": "parent",
                "queue": queue.name,
                "children": [leaf("a", "A"), {**leaf("b", "B"), "queue": other.name}],
            }
        )
        assert flow.children[0].job.queue_name == queue.name
        assert flow.children[1].job.queue_name == other.name
        await self.burst(other, _value)
        assert await self.state_of(queue, flow.job.id) == "waiting-children"
        await self.burst(queue, _value)
        done = await queue.require_job(flow.job.id)
        assert done.returnvalue == {
            f"{queue.name}:{flow.children[0].job.id}": "A",
            f"{other.name}:{flow.children[1].job.id}": "B",
        }

    async def test_children_run_by_another_connection(
        self, backend: Backend, queue: Queue, other: Queue
    ) -> None:
        """Workers in other processes: the children's worker uses its own connection."""
        self.require(backend, CAP_SHARED)
        self.require(backend, CAP_FLOWS_ACROSS_QUEUES)
        flow = await self.flows(backend).add(
            {"name": "p", "queue": queue.name, "children": [{**leaf("c", 5), "queue": other.name}]}
        )
        async with self.open_other() as second:
            await self.burst(Queue(other.name, second), _value)
        await wait_until(
            lambda: _state_is(queue, flow.job.id, "waiting"), what="parent moved to waiting"
        )
        await self.burst(queue, _value)
        assert (await queue.require_job(flow.job.id)).returnvalue == {
            f"{other.name}:{flow.children[0].job.id}": 5
        }

    async def test_a_tree_runs_leaves_first(self, backend: Backend, queue: Queue) -> None:
        flow = await self.flows(backend).add(
            {
                "name": "engine",
                "queue": queue.name,
                "children": [
                    {"name": "wheels", "children": [leaf("chassis"), leaf("paint")]},
                    leaf("seats"),
                ],
            }
        )
        assert flow.children[0].job.state == "waiting-children"
        order = Recorder()

        async def proc(job: Job) -> Any:
            order.add(job.name)
            return job.name

        await self.burst(queue, proc, concurrency=1)
        assert order.items.index("engine") == 4
        assert order.items.index("wheels") > max(
            order.items.index("chassis"), order.items.index("paint")
        )
        top = await queue.require_job(flow.job.id)
        assert sorted((await top.children_values()).values()) == ["seats", "wheels"]

    async def test_a_child_with_several_parents(self, backend: Backend, queue: Queue) -> None:
        """A DAG: ``job_id`` names a job of the same flow; it runs once and each parent waits
        for it and sees its value."""
        shared = {"name": "shared", "job_id": "shared-1", "data": 7}
        flow = await self.flows(backend).add(
            {
                "name": "top",
                "queue": queue.name,
                "children": [
                    {"name": "left", "children": [shared, leaf("l", 1)]},
                    {"name": "right", "children": [{"job_id": "shared-1"}]},
                ],
            }
        )
        left, right = flow.children
        assert left.children[0] is right.children[0]
        runs = Recorder()

        async def proc(job: Job) -> Any:
            runs.add(job.id)
            return await _value(job)

        await self.burst(queue, proc)
        assert runs.items.count("shared-1") == 1
        key = f"{queue.name}:shared-1"
        for node in (left, right):
            values = await (await queue.require_job(node.job.id)).children_values()
            assert values[key] == 7
        parents = await (await queue.require_job("shared-1")).parents()
        assert sorted(parents) == sorted(
            [JobRef(queue.name, left.job.id), JobRef(queue.name, right.job.id)]
        )
        assert (await queue.require_job(flow.job.id)).state == "completed"

    async def test_an_existing_job_as_a_child(self, backend: Backend, queue: Queue) -> None:
        flows = self.flows(backend)
        done = await queue.add("old", "x", job_id="old-1")
        await self.burst(queue, _value)
        pending = await queue.add("later", "y", job_id="later-1", delay=60)
        ready = await flows.add(
            {"name": "p1", "queue": queue.name, "children": [{"job_id": done.id}]}
        )
        assert ready.job.state == "waiting"  # every child was done already
        assert await ready.job.children_values() == {f"{queue.name}:old-1": "x"}
        waits = await flows.add(
            {"name": "p2", "queue": queue.name, "children": [{"job_id": pending.id}]}
        )
        assert waits.job.state == "waiting-children"
        assert waits.children[0].job.state == "delayed"
        await queue.promote(pending.id)
        await self.burst(queue, _value)
        assert (await queue.require_job(waits.job.id)).returnvalue == {f"{queue.name}:later-1": "y"}

    async def test_bad_flows_add_nothing(self, backend: Backend, queue: Queue) -> None:
        flows = self.flows(backend)
        cycle = {
            "name": "a",
            "job_id": "a",
            "queue": queue.name,
            "children": [{"name": "b", "children": [{"job_id": "a"}]}],
        }
        with pytest.raises(InvalidArgumentError, match="cycle"):
            await flows.add(cycle)
        missing = {"name": "p", "queue": queue.name, "children": [leaf("c"), {"job_id": "nope"}]}
        with pytest.raises(InvalidArgumentError, match="does not exist"):
            await flows.add(missing)
        await queue.add("x", None, job_id="exists")
        grown = {"name": "x", "job_id": "exists", "queue": queue.name, "children": [leaf("c")]}
        with pytest.raises(InvalidArgumentError, match="already exists"):
            await flows.add(grown)
        twice = {"name": "p", "queue": queue.name, "children": [leaf("c", job_id="d")] * 2}
        with pytest.raises(InvalidArgumentError, match="twice"):
            await flows.add(twice)
        with pytest.raises(InvalidArgumentError, match="one of"):
            await flows.add(
                {
                    "name": "p",
                    "queue": queue.name,
                    "children": [
                        leaf("c", fail_parent_on_failure=True, ignore_dependency_on_failure=True)
                    ],
                }
            )
        counts = await queue.counts()
        assert sum(v for k, v in counts.items() if k != "paused") == 1  # only "exists"

    async def test_add_bulk_adds_several_flows(self, backend: Backend, queue: Queue) -> None:
        tops = await self.flows(backend).add_bulk(
            [{"name": f"p{i}", "queue": queue.name, "children": [leaf("c", i)]} for i in range(3)]
        )
        assert [t.job.name for t in tops] == ["p0", "p1", "p2"]
        await self.burst(queue, _value)
        for i, top in enumerate(tops):
            values = await (await queue.require_job(top.job.id)).children_values()
            assert list(values.values()) == [i]

    # -- failures ---------------------------------------------------------------------------
    async def test_a_failed_child_keeps_its_parent_waiting_until_retried(
        self, backend: Backend, queue: Queue
    ) -> None:
        flow = await self.flows(backend).add(
            {"name": "p", "queue": queue.name, "children": [leaf("bad", 1), leaf("ok", 2)]}
        )
        await self.burst(queue, _fail_bad)
        parent = await queue.require_job(flow.job.id)
        assert parent.state == "waiting-children"
        deps = await parent.dependencies()
        bad = JobRef(queue.name, flow.children[0].job.id)
        assert deps.pending == {bad: "failed"}
        assert list(deps.processed.values()) == [2]
        await queue.retry(bad.id)
        await self.burst(queue, _value)  # the retried child now succeeds
        assert (await queue.require_job(flow.job.id)).state == "completed"

    async def test_fail_parent_on_failure_fails_up_the_tree(
        self, backend: Backend, queue: Queue
    ) -> None:
        flow = await self.flows(backend).add(
            {
                "name": "top",
                "queue": queue.name,
                "children": [
                    {
                        "name": "mid",
                        "opts": {"fail_parent_on_failure": True},
                        "children": [leaf("bad", 1, fail_parent_on_failure=True)],
                    },
                    leaf("ok", 2),
                ],
            }
        )
        await self.burst(queue, _fail_bad)
        mid = await queue.require_job(flow.children[0].job.id)
        top = await queue.require_job(flow.job.id)
        assert (mid.state, top.state) == ("failed", "failed")
        assert f"child {queue.name}:{flow.children[0].children[0].job.id} failed" in str(
            mid.failed_reason
        )
        assert f"child {queue.name}:{mid.id} failed" in str(top.failed_reason)

    async def test_a_retried_attempt_is_not_a_failure(self, backend: Backend, queue: Queue) -> None:
        """Policies act on a child's final failure only: one that fails once and then succeeds
        on its second attempt completes its parent."""
        flow = await self.flows(backend).add(
            {
                "name": "p",
                "queue": queue.name,
                "children": [leaf("flaky", 1, attempts=2, fail_parent_on_failure=True)],
            }
        )

        async def proc(job: Job) -> Any:
            if job.name == "flaky" and job.attempts_made == 0:
                raise ValueError("first attempt")
            return await _value(job)

        await self.burst(queue, proc)
        parent = await queue.require_job(flow.job.id)
        assert parent.state == "completed"
        assert list(parent.returnvalue.values()) == [1]

    async def test_ignore_dependency_on_failure(self, backend: Backend, queue: Queue) -> None:
        flow = await self.flows(backend).add(
            {
                "name": "p",
                "queue": queue.name,
                "children": [leaf("bad", 1, ignore_dependency_on_failure=True), leaf("ok", 2)],
            }
        )
        seen: dict[str, Any] = {}

        async def proc(job: Job) -> Any:
            if job.name == "p":
                seen["ignored"] = await job.ignored_failures()
                seen["values"] = await job.children_values()
            return await _fail_bad(job)

        await self.burst(queue, proc)
        bad_key = f"{queue.name}:{flow.children[0].job.id}"
        assert seen["ignored"] == {bad_key: "bad 1"}
        assert list(seen["values"].values()) == [2]
        assert (await queue.require_job(flow.job.id)).state == "completed"

    async def test_remove_dependency_on_failure(self, backend: Backend, queue: Queue) -> None:
        flow = await self.flows(backend).add(
            {
                "name": "p",
                "queue": queue.name,
                "children": [leaf("bad", 1, remove_dependency_on_failure=True), leaf("ok", 2)],
            }
        )
        await self.burst(queue, _fail_bad)
        parent = await queue.require_job(flow.job.id)
        assert parent.state == "completed"
        deps = await parent.dependencies()
        assert (deps.pending, deps.ignored, list(deps.processed.values())) == ({}, {}, [2])

    async def test_continue_parent_on_failure_runs_the_parent_at_once(
        self, backend: Backend, queue: Queue
    ) -> None:
        flow = await self.flows(backend).add(
            {
                "name": "p",
                "queue": queue.name,
                "children": [
                    leaf("bad", 1, continue_parent_on_failure=True),
                    leaf("slow", 2, delay=60),
                ],
            }
        )
        seen = Recorder()

        async def proc(job: Job) -> Any:
            if job.name == "p":
                seen.add((await job.ignored_failures(), (await job.dependencies()).pending))
            return await _fail_bad(job)

        async with self.running(self.make_worker(queue, proc)):
            ((ignored, pending),) = await seen.wait_for(1)
        assert ignored == {f"{queue.name}:{flow.children[0].job.id}": "bad 1"}
        assert pending == {JobRef(queue.name, flow.children[1].job.id): "delayed"}

    async def test_a_stalled_child_that_fails_applies_its_policy(
        self, backend: Backend, queue: Queue
    ) -> None:
        flow = await self.flows(backend).add(
            {"name": "p", "queue": queue.name, "children": [leaf("c", fail_parent_on_failure=True)]}
        )
        assert len(await backend.fetch(queue.name, "gone", 1, 0.05, 0)) == 1
        await asyncio.sleep(0.1)
        stalled = await backend.recover_stalled(queue.name, 0)
        assert [(s.job_id, s.failed) for s in stalled] == [(flow.children[0].job.id, True)]
        assert await self.state_of(queue, flow.job.id) == "failed"

    # -- removal and retention --------------------------------------------------------------
    async def test_removed_children_release_their_parent(
        self, backend: Backend, queue: Queue
    ) -> None:
        flows = self.flows(backend)
        one = await flows.add({"name": "p", "queue": queue.name, "children": [leaf("c")]})
        assert await queue.remove(one.children[0].job.id)
        assert await self.state_of(queue, one.job.id) == "waiting"
        two = await flows.add({"name": "p", "queue": queue.name, "children": [leaf("c", delay=60)]})
        await queue.clean("delayed", 0)
        assert await self.state_of(queue, two.job.id) == "waiting"
        await queue.drain()
        three = await flows.add(
            {"name": "p", "queue": queue.name, "children": [leaf("c"), leaf("d")]}
        )
        assert await queue.drain() == 2
        assert await self.state_of(queue, three.job.id) == "waiting"

    async def test_a_failed_child_removed_fails_its_parent(
        self, backend: Backend, queue: Queue
    ) -> None:
        flows = self.flows(backend)
        flow = await flows.add({"name": "p", "queue": queue.name, "children": [leaf("bad", 3)]})
        await self.burst(queue, _fail_bad)
        assert await self.state_of(queue, flow.job.id) == "waiting-children"
        assert await queue.remove(flow.children[0].job.id)
        parent = await queue.require_job(flow.job.id)
        assert parent.state == "failed"
        assert "failed and was removed" in str(parent.failed_reason)
        # the same when retention removes it at once
        gone = await flows.add(
            {"name": "p2", "queue": queue.name, "children": [leaf("bad", 4, remove_on_fail=True)]}
        )
        await self.burst(queue, _fail_bad)
        assert await self.state_of(queue, gone.job.id) == "failed"

    async def test_values_outlive_the_children(self, backend: Backend, queue: Queue) -> None:
        flow = await self.flows(backend).add(
            {
                "name": "p",
                "queue": queue.name,
                "children": [leaf("c", i, remove_on_complete=True) for i in range(3)],
            }
        )
        await self.burst(queue, _value)
        parent = await queue.require_job(flow.job.id)
        assert sorted(parent.returnvalue.values()) == [0, 1, 2]
        assert all([await queue.get_job(c.job.id) is None for c in flow.children])

    async def test_a_removed_parent_forgets_its_children(
        self, backend: Backend, queue: Queue
    ) -> None:
        flow = await self.flows(backend).add(
            {"name": "p", "queue": queue.name, "children": [leaf("c")]}
        )
        assert await queue.clean("waiting-children", 0) == [flow.job.id]
        child = await queue.require_job(flow.children[0].job.id)
        assert await child.parents() == []
        await self.burst(queue, _value)
        assert (await queue.require_job(child.id)).state == "completed"

    async def test_obliterating_the_childrens_queue_releases_the_parent(
        self, backend: Backend, queue: Queue, other: Queue
    ) -> None:
        self.require(backend, CAP_FLOWS_ACROSS_QUEUES)
        flow = await self.flows(backend).add(
            {"name": "p", "queue": queue.name, "children": [{"name": "c", "queue": other.name}]}
        )
        await other.obliterate()
        assert await self.state_of(queue, flow.job.id) == "waiting"

    async def test_a_parent_delay_starts_when_its_children_are_done(
        self, backend: Backend, queue: Queue
    ) -> None:
        flow = await self.flows(backend).add(
            {"name": "p", "queue": queue.name, "opts": {"delay": 30}, "children": [leaf("c")]}
        )
        await asyncio.sleep(0.05)
        (child,) = await backend.fetch(queue.name, "tok", 1, 30.0, 0)
        released = time.time()
        await backend.finish(queue.name, "tok", [_completed(child.id, 1)], 0, 30.0)
        parent = await queue.require_job(flow.job.id)
        assert parent.state == "delayed"
        assert released + 29 <= parent.run_at <= time.time() + 30.5


async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
    job = await queue.get_job(job_id)
    return job is not None and job.state == state


def _completed(job_id: str, attempts: int) -> Finish:
    return Finish(job_id, "completed", attempts, time.time(), "null")
