"""A schema migrated under jobs in flight: flows, windows and adds made at an older version go
on after the migration, finished by the new functions."""

from __future__ import annotations

import time

import asyncpg
import pytest

from polyjobs.backend import Finish, NewJob, flows_of
from polyjobs.backends.postgres import schema
from polyjobs.backends.postgres.url import PostgresUrl
from polyjobs.flow import FlowProducer
from polyjobs.plugins import open_backend
from polyjobs.queue import Queue

#: The last version before the adds of 16-17 and the set-based settle of 18.
BEFORE = 15


async def test_flows_and_windows_in_flight_at_15_are_settled_after_the_migration(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = PostgresUrl.parse(pg_url)
    conn = await asyncpg.connect(parsed.dsn, server_settings={"search_path": parsed.schema})
    try:
        await schema.migrate(conn, parsed.schema, "test", target=BEFORE)
    finally:
        await conn.close()
    fail = {"fail_parent_on_failure": True}
    with monkeypatch.context() as old:
        # this polyjobs, opened on the old schema as it stands (no plain add: it calls
        # functions of 16): flows through pj_add_flow, a window through pj_add_dedup
        old.setattr(schema, "SCHEMA_VERSION", BEFORE)
        async with open_backend(pg_url) as backend:
            flows = FlowProducer(backend)
            first = await flows.add(
                {
                    "name": "p1",
                    "queue": "p",
                    "children": [{"name": "c", "queue": "q", "data": i} for i in range(3)],
                }
            )
            second = await flows.add(
                {
                    "name": "p2",
                    "queue": "p",
                    "children": [
                        {"name": "c", "queue": "q", "data": 3, "opts": fail},
                        {"name": "c", "queue": "q", "data": 4},
                    ],
                }
            )
            holder = await Queue("q", backend).add("w", 5, deduplication={"id": "w"})
            taken = {j.data: j.id for j in await backend.fetch("q", "tok", 10, 60.0, 0)}
            assert sorted(taken) == [0, 1, 2, 3, 4, 5]
            now = time.time()
            ends = [Finish(taken[0], "completed", 1, now, "0")]
            assert (await backend.finish("q", "tok", ends, 0, 60.0)).lost == []
    assert await _version(parsed) == BEFORE
    async with open_backend(pg_url) as backend:  # migrates to this polyjobs' version
        now = time.time()
        ends = [
            Finish(taken[1], "completed", 1, now, "1"),
            Finish(taken[3], "failed", 1, now, failed_reason="no"),
            Finish(taken[2], "completed", 1, now, "2"),
            Finish(taken[4], "completed", 1, now, "4"),
            Finish(taken[5], "completed", 1, now, "5"),
        ]
        assert (await backend.finish("q", "tok", ends, 0, 60.0)).lost == []
        assert await _version(parsed) == schema.SCHEMA_VERSION
        p1 = await backend.get_job("p", first.job.id)
        assert p1 is not None and p1.state == "waiting"
        deps = await flows_of(backend).get_dependencies("p", first.job.id)
        assert sorted(deps.processed.values()) == [0, 1, 2] and deps.pending == {}
        p2 = await backend.get_job("p", second.job.id)
        assert p2 is not None and p2.state == "failed"
        assert p2.failed_reason == f"child q:{taken[3]} failed: no"
        assert await Queue("q", backend).deduplication_job_id("w") is None
        assert holder.id == taken[5]
        # the adds of 16-17 on the migrated schema, one job and a batch
        added = await backend.add("q", [NewJob("n", "6", {}, now)])
        added += await backend.add("q", [NewJob("n", str(i), {}, now) for i in (7, 8)])
        assert all(r.added for r in added)
        assert [j.name for j in await backend.fetch("p", "tok", 5, 60.0, 0)] == ["p1"]
        assert [j.data for j in await backend.fetch("q", "tok", 5, 60.0, 0)] == [6, 7, 8]


async def _version(parsed: PostgresUrl) -> int | None:
    conn = await asyncpg.connect(parsed.dsn)
    try:
        return await schema.current_version(conn, parsed.schema)
    finally:
        await conn.close()
