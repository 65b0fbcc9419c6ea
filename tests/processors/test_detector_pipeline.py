"""The detector's guarantees through the real jobs (ingest from a replayed file, analysis,
anomaly batch, whale update, alert delivery), on the embedded job backend and store, and on
Redis with the Mongo store (mongomock-ng):

- every stored trade is checked, oldest first, however old, the backlog drained over jobs;
- one alert per wallet and market per cooldown on every path (a burst of large trades goes
  through concurrent analysis jobs), the cooldown measured in trade time;
- the same alerts whatever order the jobs run in.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mongomock_ng
import pytest

from polyjobs import Runtime, open_backend
from polyjobs.backend import Backend
from polyjobs.backends.redis import RedisBackend
from polyjobs.backends.redis.testing import require_redis
from polyjobs.hookspecs import ResourceFactory
from polyjobs.polymarket.models import Alert, Trade
from polyjobs.polymarket.mongo_store import MongoStore
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.store import Store
from polyjobs.polymarket.testing import api_row
from polyjobs.processors import ALERTS, ANALYSIS, ANOMALY_BATCH, INGEST, QUEUE_SPECS, WHALE_UPDATES
from polyjobs.processors.resources import ALERT_SINK, STORE, resource_factories
from polyjobs.runtime import QueueSpec, RuntimeContext

REDIS_URL = os.environ.get("POLYJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HOUR = 3600
NOW = 1_767_484_800 + 30 * 24 * HOUR  # the file's last row; the replay moves it to "now"


def wallet(tag: str) -> str:
    return "0x" + uuid.uuid5(uuid.NAMESPACE_URL, tag).hex[:40].ljust(40, "0")


def market(tag: str) -> str:
    return "0x" + (uuid.uuid5(uuid.NAMESPACE_URL, "m" + tag).hex * 2)


class Recorder:
    """The alert sink of these tests: remembers every alert delivered."""

    key = "recorder"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> str | None:
        self.alerts.append(alert)
        return None

    def seen(self) -> set[tuple[str, tuple[tuple[str, float], ...]]]:
        """What was alerted: each trade (its transaction hash) with its signals and values."""
        return {
            (
                a.summary["transactionHash"],
                tuple(sorted((s.name, round(s.value, 2)) for s in a.signals)),
            )
            for a in self.alerts
        }


@dataclass
class Pipeline:
    """One backend and one store; each step runs some of the queues until they are idle."""

    backend: Backend
    store: Store
    settings: dict[str, str]
    recorder: Recorder = field(default_factory=Recorder)
    progress: list[Any] = field(default_factory=list)  # of each job added

    def _resources(self) -> dict[str, ResourceFactory]:
        store, recorder = self.store, self.recorder

        @asynccontextmanager
        async def shared_store(ctx: RuntimeContext) -> AsyncIterator[Store]:
            yield store

        @asynccontextmanager
        async def sink(ctx: RuntimeContext) -> AsyncIterator[Recorder]:
            yield recorder

        factories: dict[str, ResourceFactory] = dict(resource_factories())
        factories[STORE], factories[ALERT_SINK] = shared_store, sink
        return factories

    async def run(self, queues: Iterable[QueueSpec], add: QueueSpec | None = None) -> Any:
        """Run ``queues`` in burst mode (after adding one job to ``add``); the job's result."""
        runtime = Runtime(
            [*queues, ALERTS],
            self.backend,
            resources=self._resources(),
            settings=self.settings,
            schedule=False,
            known_specs={s.name: s for s in QUEUE_SPECS},
        )
        job = None
        if add is not None:
            job = await runtime.context.queue(add.name).add("step", None, job_id=uuid.uuid4().hex)
        await runtime.start(burst=True)
        await runtime.wait()
        await runtime.stop()
        if job is None:
            return None
        done = await job.refresh()
        assert done.state == "completed", done.failed_reason
        self.progress.append(done.progress)
        return done.returnvalue

    async def ingest(self) -> Any:
        return await self.run([INGEST], add=INGEST)  # large trades wait in the analysis queue

    async def analysis(self) -> Any:
        return await self.run([ANALYSIS])

    async def batch(self) -> Any:
        return await self.run([ANOMALY_BATCH], add=ANOMALY_BATCH)

    async def whales(self) -> Any:
        return await self.run([WHALE_UPDATES], add=WHALE_UPDATES)

    async def key(self, api: dict[str, Any]) -> str:
        """The stored trade key of a row of the file (the replay moved its time to "now")."""
        started = float((await self.store.get_state("ingest:replay"))["startedAt"])
        stamped = {**api, "timestamp": int(started - (NOW - api["timestamp"]))}
        return Trade.from_api(stamped).trade_key

    async def keys(self, rows: Iterable[dict[str, Any]]) -> list[str]:
        return [await self.key(r) for r in rows]

    async def drain_batches(self, most: int = 20) -> list[Any]:
        results = []
        for _ in range(most):
            result = await self.batch()
            results.append(result)
            if result["checked"] == 0:
                return results
        raise AssertionError(f"the anomaly batch still had work after {most} jobs")


MakePipeline = Callable[[list[dict[str, Any]], dict[str, str] | None], Awaitable[Pipeline]]


@pytest.fixture(params=["embedded", "redis+mongomock-ng"])
async def make_pipeline(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MakePipeline]:
    """``await make_pipeline(rows, settings)``: a fresh backend and store each call, the rows
    in a JSONL file replayed all at once (its last row is "now")."""
    kind = request.param
    if kind != "embedded":
        require_redis(REDIS_URL)
    made: list[Pipeline] = []
    prefixes: list[str] = []

    async def make(rows: list[dict[str, Any]], extra: dict[str, str] | None = None) -> Pipeline:
        n = len(made)
        path = tmp_path / f"trades-{n}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        store: Store
        if kind == "embedded":
            url = f"sqlite:///{tmp_path}/jobs-{n}.db"
            store = SqliteStore(str(tmp_path / f"store-{n}.db"))
        else:
            prefixes.append(f"pjt{uuid.uuid4().hex[:8]}")
            url = f"{REDIS_URL}?prefix={prefixes[-1]}"
            store = MongoStore(mongomock_ng.MongoClient, f"pipeline{n}")
        backend = await stack.enter_async_context(open_backend(url))
        await store.open()
        stack.push_async_callback(store.close)
        if isinstance(backend, RedisBackend):
            stack.push_async_callback(_forget, backend, prefixes[-1])
        settings = {
            "POLYJOBS_INGEST_SOURCE": f"replay:{path}",
            "POLYJOBS_INGEST_REPLAY_SPEED": "0",
            "POLYJOBS_GAMMA_ENABLED": "false",
            **(extra or {}),
        }
        made.append(Pipeline(backend, store, settings))
        return made[-1]

    async with AsyncExitStack() as stack:
        yield make


async def _forget(backend: RedisBackend, prefix: str) -> None:
    """Delete this test's keys (only its own prefix) from the shared Redis server."""
    keys = [k async for k in backend.redis.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await backend.redis.delete(*keys)


def row(who: str, where: str, usdc: float, price: float, ago: float, n: int) -> dict[str, Any]:
    """A BUY of ``usdc`` at ``price``, ``ago`` seconds before the file's last row."""
    return api_row(
        wallet=wallet(who),
        market=market(where),
        size=round(usdc / price, 6),
        price=price,
        timestamp=int(NOW - ago),
        tx=f"0x{n:064x}",
    )


def background(count: int, span: float, start: int = 0) -> list[dict[str, Any]]:
    """Small trades of 8 steady wallets in 3 markets over ``span`` seconds (no signal)."""
    return [
        row(f"bg{i % 8}", f"bg{i % 3}", 50.0 + 7 * (i % 11), 0.5, span * (1 - i / count), start + i)
        for i in range(count)
    ]


# -- every trade checked, however old ----------------------------------------------------------
async def test_a_backlog_older_than_six_hours_is_checked_in_bounded_jobs(
    make_pipeline: MakePipeline,
) -> None:
    rows = background(150, 20 * HOUR)
    shots = [
        row(f"fresh{h}", f"thin{h}", 6000 + 300 * h, 0.05 + h / 200, h * HOUR, 1000 + h)
        for h in (7, 10, 13, 16, 19)
    ]
    rows += [*shots, row("bg0", "bg0", 60.0, 0.5, 0, 2000)]  # the last row: "now"
    pipeline = await make_pipeline(rows, {"POLYJOBS_ANOMALY_BATCH_LIMIT": "50"})
    assert (await pipeline.ingest())["stored"] == len(rows)
    results = await pipeline.drain_batches()
    assert [r["checked"] for r in results] == [50, 50, 50, 6, 0]
    assert [r["remaining"] for r in results] == [106, 56, 6, 0, 0]
    assert (
        pipeline.progress[1:]
        == [  # after the ingest job: each batch job's last progress
            {"checked": r["checked"], "alerts": r["alerts"], "remaining": r["remaining"]}
            for r in results[:4]
        ]
        + [None]
    )  # the last job found nothing to check
    assert await pipeline.store.count_unchecked() == 0
    alerted = {a.trade_key for a in pipeline.recorder.alerts}
    assert alerted == set(await pipeline.keys(shots))  # 7 to 19 hours old: every one alerted


# -- one alert per burst, on every path -------------------------------------------------------
async def test_a_burst_of_large_trades_alerts_once(make_pipeline: MakePipeline) -> None:
    """10 buys of $12k in 10 minutes by one wallet on one market go to the analysis queue
    (concurrency 10): one alert, on the first trade; a re-analysis posts nothing."""
    burst = [row("burst", "m1", 12_000, 0.5, 3 * HOUR - 60 * i, 100 + i) for i in range(10)]
    rows = [*background(40, 5 * HOUR), *burst, row("bg1", "bg1", 60.0, 0.5, 0, 999)]
    pipeline = await make_pipeline(rows, None)
    assert (await pipeline.ingest())["analysis"] == 10
    await pipeline.analysis()
    keys = await pipeline.keys(burst)
    assert [a.trade_key for a in pipeline.recorder.alerts] == keys[:1]
    first = pipeline.recorder.alerts[0].id
    for key in keys[1:]:
        trade = await pipeline.store.get_trade(key)
        assert trade is not None and trade.anomaly_checked and trade.anomaly is not None
        assert trade.anomaly["suppressed"] == "cooldown"
        assert trade.anomaly["cooldownAlertId"] == first
    await pipeline.drain_batches()
    # `polyjobs enqueue analysis` of one trade of the burst: its detection, no second alert
    runtime_result = await _analyse(pipeline, keys[4])
    assert runtime_result["detected"] and runtime_result["alertId"] is None
    assert runtime_result["suppressed"] == "cooldown"
    assert runtime_result["cooldownAlertId"] == first
    assert len(pipeline.recorder.alerts) == 1


async def _analyse(pipeline: Pipeline, trade_key: str) -> Any:
    runtime = Runtime(
        [ANALYSIS, ALERTS],
        pipeline.backend,
        resources=pipeline._resources(),
        settings=pipeline.settings,
        schedule=False,
    )
    job = await runtime.queue(ANALYSIS.name).add("analyse", {"transactionId": trade_key})
    await runtime.start(burst=True)
    await runtime.wait()
    await runtime.stop()
    return (await job.refresh()).returnvalue


async def test_the_cooldown_is_in_trade_time(make_pipeline: MakePipeline) -> None:
    """Long shots by one wallet on one market 2 h apart both alert; 10 s apart once; all
    checked by one job at one moment."""
    shots = [
        row("shooter", "m2", 6000, 0.1, 3 * HOUR, 1),
        row("shooter", "m2", 6000, 0.1, 3 * HOUR - 10, 2),
        row("shooter", "m2", 6000, 0.1, HOUR, 3),
    ]
    pipeline = await make_pipeline([*shots, row("bg1", "bg1", 60.0, 0.5, 0, 9)], None)
    await pipeline.ingest()
    await pipeline.drain_batches()
    keys = await pipeline.keys(shots)
    assert sorted(a.trade_key for a in pipeline.recorder.alerts) == sorted([keys[0], keys[2]])


# -- the same alerts whatever the job order ---------------------------------------------------
def order_scenario() -> list[dict[str, Any]]:
    rows = background(30, 5 * HOUR)
    # an established wallet: 30 small trades over 60 h, then $20k (to the analysis queue)
    rows += [row("steady", "m3", 100, 0.5, (70 - 2 * i) * HOUR, 200 + i) for i in range(30)]
    rows.append(row("steady", "m4", 20_000, 0.5, HOUR, 300))
    # a burst over $10k (analysis) and one under it (anomaly batch) by two wallets
    rows += [row("burst", "m1", 12_000, 0.5, 2 * HOUR - 60 * i, 400 + i) for i in range(6)]
    rows += [row("small", "m5", 6_000, 0.1, 3 * HOUR - 60 * i, 500 + i) for i in range(6)]
    rows.append(row("shot", "m6", 7_000, 0.08, HOUR // 2, 600))  # a fresh long shot
    rows.append(row("settler", "m1", 20_000, 0.97, HOUR // 3, 700))  # noise: no alert
    rows.append(row("bg2", "bg2", 60.0, 0.5, 0, 999))
    return rows


ORDERS = {
    "whales-analysis-batch": ("ingest", "whales", "analysis", "batch"),
    "analysis-batch-whales": ("ingest", "analysis", "batch", "whales"),
    "batch-analysis-whales": ("ingest", "batch", "analysis", "whales"),
}


async def test_the_same_alerts_whatever_the_job_order(make_pipeline: MakePipeline) -> None:
    seen, pipelines = {}, []
    for name, steps in ORDERS.items():
        pipeline = await make_pipeline(order_scenario(), None)
        for step in steps:
            if step == "batch":
                await pipeline.drain_batches()
            else:
                await getattr(pipeline, step)()
        seen[name] = pipeline.recorder.seen()
        pipelines.append(pipeline)
    first = seen["whales-analysis-batch"]
    assert all(alerts == first for alerts in seen.values()), seen
    for pipeline in pipelines:
        assert await pipeline.store.count_unchecked() == 0
    rows = order_scenario()
    steady = [dict(signals) for tx, signals in first if tx == rows[60]["transactionHash"]]
    assert steady == [{"large_trade": 20_000, "size_vs_wallet": 200}]  # 30 trades before it
    assert {tx for tx, _ in first} == {
        rows[60]["transactionHash"],  # the established wallet's $20k
        rows[61]["transactionHash"],  # the first trade of each burst
        rows[67]["transactionHash"],
        rows[73]["transactionHash"],  # the fresh long shot
    }
