"""Flows and deduplication windows on PostgreSQL beyond the contract suite: many connections
deciding about one parent or one window at once, and removals made outside polyjobs."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from polyjobs.backend import Finish, flows_of
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
