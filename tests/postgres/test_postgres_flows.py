"""Flows and deduplication windows on PostgreSQL beyond the contract suite: many connections
deciding about one parent or one window at once, and removals made outside polyjobs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from polyjobs.backend import Finish, JobRecord, flows_of
from polyjobs.backends.postgres import admin
from polyjobs.backends.postgres.url import PostgresUrl
from polyjobs.flow import FlowProducer
from polyjobs.plugins import open_backend
from polyjobs.queue import Queue


async def test_siblings_finishing_at_once_on_several_connections_release_their_parent(
    pg_url: str,
) -> None:
    """Each finish reads the parent's pending edges after locking the parent, so siblings
    committing at the same moment never both see the other still pending."""
    async with open_backend(pg_url) as one, open_backend(pg_url) as two:
        for round_ in range(3):
            flow = await FlowProducer(one).add(
                {
                    "name": "p",
                    "queue": "q",
                    "children": [{"name": "c", "data": i} for i in range(24)],
                }
            )
            taken_one = await one.fetch("q", f"a{round_}", 12, 30.0, 0)
            taken_two = await two.fetch("q", f"b{round_}", 12, 30.0, 0)
            assert len(taken_one) + len(taken_two) == 24

            def done(job_id: str) -> list[Finish]:
                return [Finish(job_id, "completed", 1, time.time(), "1")]

            await asyncio.gather(
                *(one.finish("q", f"a{round_}", done(j.id), 0, 30.0) for j in taken_one),
                *(two.finish("q", f"b{round_}", done(j.id), 0, 30.0) for j in taken_two),
            )
            parent = await one.get_job("q", flow.job.id)
            assert parent is not None and parent.state == "waiting"
            deps = await flows_of(one).get_dependencies("q", flow.job.id)
            assert len(deps.processed) == 24 and deps.pending == {}
            await one.obliterate("q")


async def test_one_window_takes_one_add_of_many_connections_at_once(pg_url: str) -> None:
    async with open_backend(pg_url) as one, open_backend(pg_url) as two:
        queues = [Queue("q", one), Queue("q", two)]
        jobs = await asyncio.gather(
            *(queues[i % 2].add("x", i, deduplication={"id": "once"}) for i in range(20))
        )
        assert len({j.id for j in jobs}) == 1
        assert (await queues[0].counts())["waiting"] == 1


async def test_a_child_deleted_by_hand_releases_its_parent(pg_url: str) -> None:
    """Removal is settled inside the database (a trigger on the jobs table), so even an
    operator's DELETE keeps the flow consistent."""
    async with open_backend(pg_url) as backend:
        flow = await FlowProducer(backend).add(
            {"name": "p", "queue": "q", "children": [{"name": "c"}]}
        )
        parsed = PostgresUrl.parse(pg_url)
        conn = await asyncpg.connect(parsed.dsn)
        try:
            await conn.execute(
                f'DELETE FROM "{parsed.schema}".jobs WHERE queue = $1 AND id = $2',
                "q",
                flow.children[0].job.id,
            )
        finally:
            await conn.close()
        parent = await backend.get_job("q", flow.job.id)
        assert parent is not None and parent.state == "waiting"
        assert await flows_of(backend).get_parents("q", flow.children[0].job.id) == []


async def test_a_flow_linking_an_already_failed_child_applies_its_policy(pg_url: str) -> None:
    async with open_backend(pg_url) as backend:
        queue = Queue("q", backend)
        strict = await queue.add("c", 1, job_id="strict", fail_parent_on_failure=True)
        lenient = await queue.add("c", 2, job_id="lenient")
        taken = await backend.fetch("q", "tok", 2, 30.0, 0)
        assert {j.id for j in taken} == {strict.id, lenient.id}
        failed = [Finish(j.id, "failed", 1, time.time(), failed_reason="no") for j in taken]
        await backend.finish("q", "tok", failed, 0, 30.0)
        flows = FlowProducer(backend)
        fails = await flows.add({"name": "p", "queue": "q", "children": [{"job_id": "strict"}]})
        waits = await flows.add({"name": "p", "queue": "q", "children": [{"job_id": "lenient"}]})
        first = await queue.require_job(fails.job.id)
        assert first.state == "failed" and "child q:strict failed: no" in str(first.failed_reason)
        second = await queue.require_job(waits.job.id)
        assert second.state == "waiting-children"
        deps = await flows_of(backend).get_dependencies("q", waits.job.id)
        assert [(str(ref), state) for ref, state in deps.pending.items()] == [
            ("q:lenient", "failed")
        ]


async def test_one_finish_of_many_children_settles_each_parent_once_with_every_outcome(
    pg_url: str,
) -> None:
    """A finish whose batch holds several children of the same parents (completed, failed
    with a policy) and a job holding a window settles them together: every edge gets its value
    or reason, each parent is released once nothing is pending, and the window is freed."""
    async with open_backend(pg_url) as backend:
        flows = FlowProducer(backend)
        queue = Queue("q", backend)
        soft = {"ignore_dependency_on_failure": True}
        children = [{"name": "c", "queue": "q", "data": i} for i in range(4)]
        first = await flows.add(
            {
                "name": "p1",
                "queue": "p",
                "children": [*children, {"name": "c", "queue": "q", "data": 4, "opts": soft}],
            }
        )
        two = [{"name": "c", "queue": "q", "data": i} for i in (5, 6)]
        second = await flows.add({"name": "p2", "queue": "p", "children": two})
        one = [{"name": "c", "queue": "q", "data": 7}]
        waiting = await flows.add({"name": "p3", "queue": "p", "children": one})
        holder = await queue.add("w", 8, deduplication={"id": "w"})
        assert await queue.deduplication_job_id("w") == holder.id
        taken = await backend.fetch("q", "tok", 9, 30.0, 0)
        assert len(taken) == 9
        now = time.time()
        ends = [
            Finish(j.id, "failed", 1, now, failed_reason="soft no")
            if j.data == 4
            else Finish(j.id, "completed", 1, now, str(j.data))
            for j in taken
            if j.data != 7
        ]
        result = await backend.finish("q", "tok", ends, 0, 30.0)
        assert result.lost == []
        for flow, values, ignored in [(first, [0, 1, 2, 3], 1), (second, [5, 6], 0)]:
            parent = await backend.get_job("p", flow.job.id)
            assert parent is not None and parent.state == "waiting"
            deps = await flows_of(backend).get_dependencies("p", flow.job.id)
            assert sorted(deps.processed.values()) == values
            assert deps.pending == {} and len(deps.ignored) == ignored
        assert list(
            (await flows_of(backend).get_dependencies("p", first.job.id)).ignored.values()
        ) == ["soft no"]
        assert await queue.deduplication_job_id("w") is None
        third = await backend.get_job("p", waiting.job.id)
        assert third is not None and third.state == "waiting-children"
        assert len(await backend.fetch("p", "tok", 5, 30.0, 0)) == 2  # each released once


async def test_batches_of_children_of_the_same_parents_finishing_at_once_release_each_once(
    pg_url: str,
) -> None:
    """Two workers finish batches that each hold children of every parent at the same moment
    (completed, and failed with the ignore policy): each finish settles its children's edges
    together and then looks at each parent once, in one order, so no parent is left waiting
    and none is released twice."""
    soft = {"ignore_dependency_on_failure": True}
    async with open_backend(pg_url) as one, open_backend(pg_url) as two:
        flows = FlowProducer(one)
        parents = [
            await flows.add(
                {
                    "name": f"p{p}",
                    "queue": "p",
                    "children": [
                        {"name": "c", "queue": "q", "data": 10 * p + i, "opts": soft}
                        for i in range(8)
                    ],
                }
            )
            for p in range(4)
        ]
        taken = {
            "a": await one.fetch("q", "a", 16, 30.0, 0),
            "b": await two.fetch("q", "b", 16, 30.0, 0),
        }
        assert sorted(j.data for jobs in taken.values() for j in jobs) == sorted(
            10 * p + i for p in range(4) for i in range(8)
        )

        def ends(jobs: list[JobRecord]) -> list[Finish]:
            now = time.time()
            return [
                Finish(j.id, "failed", 1, now, failed_reason=str(j.data))
                if j.data % 3 == 0
                else Finish(j.id, "completed", 1, now, str(j.data))
                for j in jobs
            ]

        results = await asyncio.gather(
            *(
                backend.finish("q", token, ends(taken[token][k : k + 4]), 0, 30.0)
                for k in range(0, 16, 4)
                for token, backend in (("a", one), ("b", two))
            )
        )
        assert all(r.lost == [] for r in results)
        for p, flow in enumerate(parents):
            parent = await one.get_job("p", flow.job.id)
            assert parent is not None and parent.state == "waiting"
            deps = await flows_of(one).get_dependencies("p", flow.job.id)
            datas = [10 * p + i for i in range(8)]
            assert deps.pending == {}
            assert sorted(deps.processed.values()) == [d for d in datas if d % 3]
            assert sorted(deps.ignored.values()) == sorted(str(d) for d in datas if d % 3 == 0)
        assert sorted(j.name for j in await one.fetch("p", "t", 10, 30.0, 0)) == [
            "p0",
            "p1",
            "p2",
            "p3",
        ]


async def test_crossed_finishes_failing_and_completing_children_of_the_same_parents_never_deadlock(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two finishes at once: one fails (fail_parent_on_failure) the children of P2 and P3 and
    completes those of P0 and P1, the other the reverse. A third session holds the completed
    children's edges until both finishes wait, so both have applied their policies when they
    come to the parents. Each locks the parents it decides about in one (queue, id) order
    before applying any policy, so neither holds a parent the other locked first: no deadlock
    for PostgreSQL to break (a second's stall, the finish run again), and every parent is
    failed by its failing child."""
    deadlocks = 0
    real = admin.finish

    async def counting(*args: Any) -> list[Any]:
        nonlocal deadlocks
        try:
            return await real(*args)
        except asyncpg.DeadlockDetectedError:
            deadlocks += 1
            raise

    monkeypatch.setattr(admin, "finish", counting)
    fail = {"fail_parent_on_failure": True}
    parsed = PostgresUrl.parse(pg_url)
    async with open_backend(pg_url) as one, open_backend(pg_url) as two:
        parents = [
            await FlowProducer(one).add(
                {
                    "name": f"p{p}",
                    "queue": "p",
                    "children": [
                        {"name": "c", "queue": "q", "data": 10 * p + i, "opts": opts}
                        for i, opts in enumerate([fail, {}])
                    ],
                }
            )
            for p in range(4)
        ]
        taken = {j.data: j.id for j in await one.fetch("q", "t", 8, 30.0, 0)}
        gate = await asyncpg.connect(parsed.dsn, server_settings={"search_path": parsed.schema})
        try:
            async with gate.transaction():
                await gate.execute(
                    "SELECT 1 FROM job_deps WHERE child_queue = 'q' AND child_id = ANY($1) "
                    "FOR UPDATE",
                    [taken[10 * p + 1] for p in range(4)],
                )
                finishes = asyncio.gather(
                    one.finish("q", "t", _crossed(taken, [2, 3], [0, 1]), 0, 30.0),
                    two.finish("q", "t", _crossed(taken, [0, 1], [2, 3]), 0, 30.0),
                )
                for _ in range(100):  # until both wait (on the edges, or one on the other)
                    waiting = await gate.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database() AND pid <> pg_backend_pid()"
                    )
                    if waiting >= 2:
                        break
                    await asyncio.sleep(0.05)
            results = await finishes
        finally:
            await gate.close()
        assert [r.lost for r in results] == [[], []]
        for flow in parents:
            parent = await one.get_job("p", flow.job.id)
            assert parent is not None and parent.state == "failed"
    assert deadlocks == 0


def _crossed(taken: dict[int, str], failing: list[int], completing: list[int]) -> list[Finish]:
    """Ends failing child 0 of each parent in ``failing`` and completing child 1 of each in
    ``completing`` (``taken``: job id by data, 10 * parent + child)."""
    now = time.time()
    return [
        *(Finish(taken[10 * p], "failed", 1, now, failed_reason="x") for p in failing),
        *(Finish(taken[10 * p + 1], "completed", 1, now, "1") for p in completing),
    ]
