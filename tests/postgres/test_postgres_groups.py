"""Job groups on PostgreSQL beyond the contract suite: what is stored (a queue without groups
stores none; every way of adding a job stores its group), several sessions taking at once, the
start of a queue's groups racing its other adds, forgotten groups, obliterate."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg

from polyjobs import Queue, open_backend
from polyjobs.backend import CAP_GROUPS, Backend, Finish, NewJob
from polyjobs.backends.postgres.url import PostgresUrl
from polyjobs.flow import FlowProducer
from polyjobs.options import Keep


def _new(group: str | None, data: Any) -> NewJob:
    opts: dict[str, Any] = {} if group is None else {"group": group}
    return NewJob("j", json.dumps(data), opts, time.time(), group=group)


@asynccontextmanager
async def _sql(url: str) -> AsyncIterator[asyncpg.Connection]:
    parsed = PostgresUrl.parse(url)
    conn = await asyncpg.connect(parsed.dsn, server_settings={"search_path": parsed.schema})
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def _sessions(url: str, n: int) -> AsyncIterator[list[Backend]]:
    """n backend objects: n pools, so n sessions take at once."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_backend(url)) for _ in range(n)]


async def test_a_queue_stores_groups_only_from_its_first_grouped_job(pg_url: str) -> None:
    async with open_backend(pg_url) as backend, _sql(pg_url) as sql:
        assert CAP_GROUPS in backend.capabilities
        await backend.add("plain", [_new(None, i) for i in range(3)])
        await backend.add("grouped", [_new(None, "u1"), _new(None, "u2")])
        assert await sql.fetchval("SELECT count(*) FROM jobs WHERE grp IS NOT NULL") == 0
        assert await sql.fetchval("SELECT count(*) FROM job_groups") == 0
        # the first grouped job: the queue's jobs without a group become one member
        await backend.add("grouped", [_new("a", "a1"), _new("a", "a2")])
        await backend.add("grouped", [_new(None, "u3")])
        rows = await sql.fetch("SELECT queue, grp, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2")
        assert [tuple(r) for r in rows] == [
            ("grouped", "", 3),
            ("grouped", "a", 2),
            ("plain", None, 3),
        ]
        flags = await sql.fetch("SELECT queue, has_groups FROM queues ORDER BY queue")
        assert [tuple(r) for r in flags] == [("grouped", True), ("plain", False)]
        got = await backend.fetch("grouped", "w", 9, 30, 0)
        assert [j.data for j in got] == ["u1", "a1", "u2", "a2", "u3"]
        assert [j.data for j in await backend.fetch("plain", "w", 9, 30, 0)] == [0, 1, 2]


async def test_the_first_grouped_add_racing_other_adds_strands_no_job(pg_url: str) -> None:
    async with _sessions(pg_url, 3) as backends, _sql(pg_url) as sql:
        await backends[0].add("q", [_new(None, "before")])
        adds = [
            backends[i % 3].add("q", [_new(None, f"u{i}"), _new(None, f"v{i}")]) for i in range(30)
        ]
        adds.insert(15, backends[1].add("q", [_new("a", "a1")]))
        await asyncio.gather(*adds)
        assert await sql.fetchval("SELECT count(*) FROM jobs WHERE grp IS NULL") == 0
        taken = await backends[2].fetch("q", "w", 100, 30, 0)
        assert len(taken) == 62 and "a1" in [j.data for j in taken]


async def test_sessions_taking_at_once_keep_turns_and_caps(pg_url: str) -> None:
    async with _sessions(pg_url, 4) as backends:
        queue = Queue("q", backends[0])
        await queue.set_group_concurrency(2)
        await backends[0].add("q", [_new(f"g{i % 5}", i) for i in range(60)])

        async def take(backend: Backend) -> list[Any]:
            return await backend.fetch("q", f"w{id(backend)}", 3, 30, 0)

        # four sessions at once, several times: never more than 2 active jobs of a group
        taken: list[Any] = []
        for _ in range(3):
            for got in await asyncio.gather(*(take(b) for b in backends)):
                taken += got
        per_group = Counter(j.opts["group"] for j in taken)
        assert per_group == {f"g{i}": 2 for i in range(5)}
        # each group's jobs in order: the two first of each
        assert sorted(j.data for j in taken) == list(range(10))
        # the ring: a finished slot goes to the group served longest ago
        ends = [Finish(j.id, "completed", 1, time.time(), returnvalue_json="null") for j in taken]
        for backend in backends:
            mine = [f for f, j in zip(ends, taken, strict=True) if j.worker == f"w{id(backend)}"]
            await backend.finish("q", f"w{id(backend)}", mine, 0, 30)
        rounds = await asyncio.gather(*(take(b) for b in backends))
        again = [j for got in rounds for j in got]
        assert Counter(j.opts["group"] for j in again) == {f"g{i}": 2 for i in range(5)}


async def test_groups_with_nothing_left_are_forgotten_unless_held(pg_url: str) -> None:
    async with open_backend(pg_url) as backend, _sql(pg_url) as sql:
        queue = Queue("q", backend)
        await queue.hold_group("held", 3600)
        for i in range(300):
            await backend.add("q", [_new(f"wallet-{i}", i)])
            got = await backend.fetch("q", "w", 1, 30, 0)
            done = Finish(got[0].id, "completed", 1, time.time(), keep=Keep(count=0))
            await backend.finish("q", "w", [done], 0, 30)
        left = await sql.fetchval("SELECT count(*) FROM job_groups WHERE queue = 'q'")
        assert left < 150  # forgotten every 256 turns, not one row per wallet for ever
        assert await sql.fetchval("SELECT count(*) FROM job_groups WHERE grp = 'held'") == 1
        await backend.add("q", [_new("wallet-1", "back")])
        assert [j.data for j in await backend.fetch("q", "w", 1, 30, 0)] == ["back"]


async def test_obliterate_leaves_no_group_rows(pg_url: str) -> None:
    async with open_backend(pg_url) as backend, _sql(pg_url) as sql:
        queue = Queue("q", backend)
        await queue.set_group_rate_limit("5/60s")
        await backend.add("q", [_new("a", 1), _new("b", 2)])
        assert len(await backend.fetch("q", "w", 9, 30, 0)) == 2
        await queue.hold_group("c", 60)
        await backend.obliterate("q")
        for table in ("job_groups", "group_starts", "jobs", "queues"):
            assert await sql.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_every_way_a_job_is_added_stores_its_group(pg_url: str) -> None:
    """Single and bulk adds, a deduplicated add, the add kept while its window's job runs
    (added when that job ends) and a flow's nodes: each row has its group, none is NULL."""
    async with open_backend(pg_url) as backend, _sql(pg_url) as sql:
        queue = Queue("q", backend)
        await queue.add("j", "single", group="a")
        await queue.add_bulk([("j", "bulk", {"group": "b"}), ("j", "plain", {})])
        window = {"id": "k", "keep_last_if_active": True}
        first = await queue.add("j", "windowed", group="c", deduplication=window)
        taken = {j.data: j for j in await backend.fetch("q", "w", 9, 30, 0)}
        assert set(taken) == {"single", "bulk", "plain", "windowed"}
        kept = await queue.add("j", "kept", group="d", deduplication=window)
        assert kept.id == first.id  # absorbed: kept until the windowed job ends
        await FlowProducer(backend).add(
            {
                "name": "parent",
                "queue": "q",
                "opts": {"group": "e"},
                "children": [{"name": "child", "queue": "q", "opts": {"group": "f"}}],
            }
        )
        end = Finish(taken["windowed"].id, "completed", 1, time.time(), returnvalue_json="null")
        await backend.finish("q", "w", [end], 0, 30)
        rows = await sql.fetch("SELECT name, data, grp FROM jobs ORDER BY seq")
        stored = {
            (r["name"], json.loads(r["data"]) if r["name"] == "j" else None): r["grp"] for r in rows
        }
        assert stored[("j", "single")] == "a" and stored[("j", "bulk")] == "b"
        assert stored[("j", "plain")] == "" and stored[("j", "kept")] == "d"
        assert stored[("parent", None)] == "e" and stored[("child", None)] == "f"
        groups = await sql.fetch("SELECT grp FROM job_groups ORDER BY grp")
        assert {r["grp"] for r in groups} >= {"", "a", "b", "c", "d", "e", "f"}
