"""The ``polymarket-ingest`` job on the in-memory backend: from a fake Data API on loopback
(watermark, idempotent writes, large trades straight to analysis once, also when the same page
is served twice) and from a replayed JSONL file."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from polyjobs import Runtime, open_backend
from polyjobs.hookspecs import ResourceFactory
from polyjobs.polymarket.models import Trade
from polyjobs.polymarket.replay import ReplaySource
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.store import Store
from polyjobs.polymarket.testing import FakeDataApi, FakeHTTPServer, api_row
from polyjobs.processors import ANALYSIS, INGEST
from polyjobs.processors.queues import analysis_job_id
from polyjobs.processors.resources import STORE, resource_factories
from polyjobs.runtime import RuntimeContext


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    made = SqliteStore(":memory:")
    await made.open()
    yield made
    await made.close()


def _resources(store: Store) -> dict[str, ResourceFactory]:
    @asynccontextmanager
    async def shared_store(ctx: RuntimeContext) -> AsyncIterator[Store]:
        yield store

    factories: dict[str, ResourceFactory] = dict(resource_factories())
    factories[STORE] = shared_store
    return factories


async def _run_ingest(runtime: Runtime, job_id: str) -> dict[str, Any]:
    job = await runtime.queue(INGEST.name).add("ingest", None, job_id=job_id)
    await runtime.start(burst=True)
    await runtime.wait()
    await runtime.stop()
    result: dict[str, Any] = (await job.refresh()).returnvalue
    assert (await job.refresh()).state == "completed", job.failed_reason
    return result


async def test_ingest_from_the_data_api_is_idempotent_and_enqueues_analysis_once(
    store: Store,
) -> None:
    now = int(time.time())
    rows: list[Any] = [api_row(tx=f"0x{i}", timestamp=now - 600 + i) for i in range(6)]
    big = [
        api_row(tx="0xb1", size=40_000, price=0.5, timestamp=now - 300),
        api_row(tx="0xb2", size=100_000, price=0.1, timestamp=now - 200),  # exactly $10k
    ]
    rows += [*big, {"side": "BUY", "timestamp": now - 100}]  # and one malformed row
    big_keys = {Trade.from_api(r).trade_key for r in big}
    async with FakeHTTPServer() as server, open_backend("memory://") as backend:
        server.route("/trades", FakeDataApi(rows))
        settings = {"POLYJOBS_DATA_API_URL": server.url, "POLYJOBS_INGEST_OVERLAP": "60s"}
        runtime = Runtime(
            [INGEST],
            backend,
            resources=_resources(store),
            settings=settings,
            schedule=False,
            known_specs={ANALYSIS.name: ANALYSIS},
        )
        first = await _run_ingest(runtime, "first")
        second = await _run_ingest(runtime, "second")  # the same page, served again

        assert first["received"] == 9 and first["stored"] == 8 and first["skipped"] == 1
        assert first["analysis"] == 2
        assert second["stored"] == 0
        for row in rows[:8]:
            assert await store.get_trade(Trade.from_api(row).trade_key) is not None
        waiting = await runtime.context.queue(ANALYSIS.name).jobs("waiting")
        assert sorted(j.id for j in waiting) == sorted(analysis_job_id(k) for k in big_keys)
        assert {j.data["transactionId"] for j in waiting} == big_keys
        assert all(j.priority == 1 for j in waiting)
        wallets = {Trade.from_api(r).trade_key: Trade.from_api(r).proxy_wallet for r in big}
        assert {j.group for j in waiting} == {
            f"wallet-{wallets[j.data['transactionId']]}" for j in waiting
        }  # grouped by wallet: turns between wallets, one trade of a wallet at a time

        starts = [int(r.query["start"][0]) for r in server.requests_to("/trades")]
        ends = [int(r.query["end"][0]) for r in server.requests_to("/trades")]
        assert starts[0] <= now - 3600 + 5  # the first poll reads the back-fill window
        assert starts[1] == ends[0] - 60  # then from the watermark, minus the overlap
        assert await store.get_state("ingest:data-api") == {"end": ends[1]}


async def test_an_analysed_trade_is_not_sent_again_when_re_read(store: Store) -> None:
    now = int(time.time())
    row = api_row(tx="0xbig", size=50_000, price=0.5, timestamp=now - 30)
    async with FakeHTTPServer() as server, open_backend("memory://") as backend:
        server.route("/trades", FakeDataApi([row]))
        runtime = Runtime(
            [INGEST],
            backend,
            resources=_resources(store),
            settings={"POLYJOBS_DATA_API_URL": server.url},
            schedule=False,
            known_specs={ANALYSIS.name: ANALYSIS},
        )
        await _run_ingest(runtime, "first")
        analysis = runtime.context.queue(ANALYSIS.name)
        await analysis.remove(analysis_job_id(Trade.from_api(row).trade_key))  # retention
        await store.mark_checked({Trade.from_api(row).trade_key: None}, at=time.time())
        again = await _run_ingest(runtime, "second")
    assert again["analysis"] == 0
    assert await analysis.jobs("waiting") == []


def _write_jsonl(path: Path, rows: list[Any]) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


async def test_replay_all_at_once_keeps_the_spacing_and_ends_now(tmp_path: Path) -> None:
    path = tmp_path / "trades.jsonl"
    _write_jsonl(path, [api_row(tx=f"0x{i}", timestamp=1000 + 100 * i) for i in range(5)])
    with path.open("a") as fh:
        fh.write("not json\n")
    source = ReplaySource(path, speed=0)
    batch = await source.read(None, now=50_000.0)
    assert [t.timestamp for t in batch.trades] == [49_600, 49_700, 49_800, 49_900, 50_000]
    assert batch.skipped == 1 and batch.exhausted
    again = await source.read(batch.state, now=50_010.0)
    assert again.trades == [] and again.exhausted and again.skipped == 0


async def test_replay_at_a_speed_stamps_fresh_times(tmp_path: Path) -> None:
    path = tmp_path / "trades.jsonl"
    _write_jsonl(path, [api_row(tx=f"0x{i}", timestamp=1000 + 100 * i) for i in range(5)])
    source = ReplaySource(path, speed=100)
    first = await source.read(None, now=10_000.0)
    assert [t.timestamp for t in first.trades] == [10_000] and not first.exhausted
    second = await source.read(first.state, now=10_002.5)
    assert [t.timestamp for t in second.trades] == [10_001, 10_002]
    last = await source.read(second.state, now=10_100.0)
    assert [t.timestamp for t in last.trades] == [10_003, 10_004] and last.exhausted


async def test_ingest_job_reads_the_replay_source(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "trades.jsonl"
    _write_jsonl(path, [api_row(tx=f"0x{i}", timestamp=1000 + 10 * i) for i in range(20)])
    settings = {"POLYJOBS_INGEST_SOURCE": f"replay:{path}", "POLYJOBS_INGEST_REPLAY_SPEED": "0"}
    async with open_backend("memory://") as backend:
        runtime = Runtime(
            [INGEST], backend, resources=_resources(store), settings=settings, schedule=False
        )
        result = await _run_ingest(runtime, "replay")
    assert result == {
        "source": "replay",
        "received": 20,
        "stored": 20,
        "skipped": 0,
        "analysis": 0,
        "requests": 0,
        "exhausted": True,
    }
    assert (await store.get_state("ingest:replay"))["position"] == 20


def test_ingest_queue_spec() -> None:
    assert INGEST.short_name == "ingest" and INGEST.concurrency == 1
    assert INGEST.schedule is not None and INGEST.schedule.every == 15.0
