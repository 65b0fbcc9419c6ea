"""End to end on the in-memory job backend: trades in -> anomaly batch -> alerts -> alerts
jobs -> a fake Discord on loopback received exactly one message per alert, on both stores,
also after a 429 and a 500, and when the alerts job is enqueued again."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import mongomock_ng
import pytest

from polyjobs import App, Backoff, Runtime, open_backend
from polyjobs.errors import InvalidArgumentError
from polyjobs.hookspecs import ResourceFactory
from polyjobs.plugins import PluginHost
from polyjobs.polymarket.models import Trade
from polyjobs.polymarket.mongo_store import MongoStore
from polyjobs.polymarket.sqlite_store import SqliteStore
from polyjobs.polymarket.store import Store
from polyjobs.polymarket.testing import FakeHTTPServer, FakeResponse, make_trade
from polyjobs.processors import ALERTS, ANALYSIS, ANOMALY_BATCH, QUEUE_SPECS, WHALE_UPDATES
from polyjobs.processors.resources import STORE, resource_factories
from polyjobs.runtime import RuntimeContext

HOOK = "/api/webhooks/42/e2e-secret-token"
FAST = Backoff("fixed", 0.05)
W = ["0x" + c * 40 for c in "123456"]
M1, M2 = "0x" + "a" * 64, "0x" + "b" * 64


def replayed_trades(now: float) -> tuple[list[Trade], set[str]]:
    """A replayed batch with known whales and anomalies; returns the trades and the trade
    keys that must produce an alert."""
    whale = make_trade(wallet=W[0], market=M1, tx="0x1", size=200_000, price=0.075, timestamp=now)
    same_again = make_trade(
        wallet=W[0], market=M1, tx="0x2", size=30_000, price=0.5, timestamp=now + 1
    )
    settlement = make_trade(
        wallet=W[1], market=M1, tx="0x3", size=20_000, price=0.97, timestamp=now
    )
    small = make_trade(wallet=W[2], market=M2, tx="0x4", size=20, price=0.5, timestamp=now)
    fresh = make_trade(wallet=W[3], market=M2, tx="0x5", size=16_000, price=0.5, timestamp=now)
    trades = [whale, whale, same_again, settlement, small, fresh]
    return trades, {whale.trade_key, fresh.trade_key}


def _store(kind: str) -> Store:
    if kind == "sqlite":
        return SqliteStore(":memory:")
    return MongoStore(mongomock_ng.MongoClient, "e2e")


def _resources(store: Store) -> dict[str, ResourceFactory]:
    """The real resources, except that the store is the test's (opened once, kept open)."""

    @asynccontextmanager
    async def shared_store(ctx: RuntimeContext) -> AsyncIterator[Store]:
        yield store

    factories: dict[str, ResourceFactory] = dict(resource_factories())
    factories[STORE] = shared_store
    return factories


async def _drain(runtime: Runtime, rounds: int = 6) -> None:
    """Run the workers in burst mode until no queue has work left."""
    for _ in range(rounds):
        await runtime.start(burst=True)
        await runtime.wait()
        await runtime.stop()
        pending = 0
        for queue in runtime.queues.values():
            counts = await queue.counts()
            pending += counts["waiting"] + counts["delayed"] + counts["active"]
        if not pending:
            return
    raise AssertionError("queues still have work after draining")


@pytest.fixture(params=["sqlite", "mongomock-ng"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    made = _store(request.param)
    await made.open()
    yield made
    await made.close()


@pytest.fixture
async def discord() -> AsyncIterator[FakeHTTPServer]:
    async with FakeHTTPServer(FakeResponse(200, {"id": "9"})) as server:
        yield server


RunFactory = Callable[..., Runtime]


@pytest.fixture
async def make_runtime(store: Store, discord: FakeHTTPServer) -> AsyncIterator[RunFactory]:
    async with open_backend("memory://") as backend:

        def build(extra: Mapping[str, Any] | None = None) -> Runtime:
            specs = [spec.with_changes(backoff=FAST) for spec in QUEUE_SPECS]
            settings = {
                "DISCORD_WEBHOOK_URL": discord.url + HOOK,
                "POLYJOBS_GAMMA_URL": discord.url,
            }
            settings.update(extra or {})
            return Runtime(
                specs, backend, resources=_resources(store), settings=settings, schedule=False
            )

        yield build


def _footers(discord: FakeHTTPServer) -> list[str]:
    return [r.body["embeds"][0]["footer"]["text"] for r in discord.requests_to("/api/webhooks/")]


async def test_replayed_batch_alerts_once_each_despite_429_and_500(
    store: Store, discord: FakeHTTPServer, make_runtime: RunFactory
) -> None:
    discord.script(
        HOOK,
        FakeResponse(429, {"message": "slow down", "retry_after": 0.05, "global": False}),
        FakeResponse(500, {"message": "oops"}),
    )
    trades, expected = replayed_trades(time.time() - 60)
    assert await store.add_trades(trades) == len(trades) - 1  # the replayed duplicate
    runtime = make_runtime()
    await runtime.queue(ANOMALY_BATCH.name).add("batch-detection", {})
    await _drain(runtime)

    batch = (await runtime.queue(ANOMALY_BATCH.name).jobs("completed"))[0]
    result = batch.returnvalue
    assert (result["checked"], result["detected"], result["alerts"]) == (5, 3, 2)
    assert (result["suppressed"], result["skipped"], result["remaining"]) == (1, 0, 0)
    alert_ids = set()
    for key in expected:
        trade = await store.get_trade(key)
        assert trade is not None and trade.anomaly is not None
        alert_ids.add(trade.anomaly["alertId"])
    assert None not in alert_ids and len(alert_ids) == 2
    footers = _footers(discord)
    assert len(footers) == 4  # 429 + 500 + one delivery per alert
    delivered = [f for f, r in zip(footers, discord.received, strict=True) if r.body and f][2:]
    assert sorted(f.split()[1] for f in delivered) == sorted(alert_ids)
    for alert_id in alert_ids:
        alert = await store.get_alert(alert_id)
        assert alert is not None and alert.status == "sent" and alert.discord_message_id == "9"
    # grouped by webhook (its key, never its token); the 429 held the group, no attempt counted
    delivered_jobs = await runtime.queue(ALERTS.name).jobs("completed")
    groups = {j.group for j in delivered_jobs}
    assert len(groups) == 1 and (groups.pop() or "").startswith("discord:")
    assert HOOK.rsplit("/", 1)[-1] not in str([j.opts for j in delivered_jobs])
    assert sorted(j.attempts_made for j in delivered_jobs) == [1, 2]  # the 500 counted once

    # the alerts job enqueued again (same job id, and under new ids): nothing is posted twice
    alerts_queue = runtime.queue(ALERTS.name)
    for alert_id in alert_ids:
        await alerts_queue.add("deliver", {"alertId": alert_id}, job_id=alert_id)
        await alerts_queue.add("deliver", {"alertId": alert_id}, job_id=f"{alert_id}-again")
    await _drain(runtime)
    assert len(_footers(discord)) == 4
    again = [j.returnvalue for j in await alerts_queue.jobs("completed")]
    assert sum(1 for r in again if r["status"] == "already-sent") == 2


async def test_deleted_webhook_fails_without_retries(
    store: Store, discord: FakeHTTPServer, make_runtime: RunFactory
) -> None:
    discord.script(HOOK, FakeResponse(404, {"message": "Unknown Webhook", "code": 10015}))
    trades, expected = replayed_trades(time.time() - 60)
    await store.add_trades(trades)
    runtime = make_runtime()
    await runtime.queue(ANOMALY_BATCH.name).add("batch-detection", {})
    await _drain(runtime)
    # alerts in flight together may each reach Discord; once the 404 is known, no more calls
    calls = len(discord.requests_to(HOOK))
    assert 1 <= calls <= len(expected)
    later = make_trade(wallet=W[5], market=M2, tx="0x9", size=40_000, price=0.5)
    await store.add_trades([later])
    analysis = await runtime.queue(ANALYSIS.name).add("analyse", {"transactionId": later.trade_key})
    await _drain(runtime)
    assert (await analysis.refresh()).state == "completed"
    assert len(discord.requests_to(HOOK)) == calls
    failed = await runtime.queue(ALERTS.name).jobs("failed")
    assert all(j.attempts_made == 1 for j in failed)
    assert any("HTTP 404" in (j.failed_reason or "") for j in failed)
    assert any("disabled" in (j.failed_reason or "") for j in failed)
    assert all("e2e-secret-token" not in (j.failed_reason or "") for j in failed)
    assert all("e2e-secret-token" not in (j.stacktrace or "") for j in failed)


async def test_analysis_job(
    store: Store, discord: FakeHTTPServer, make_runtime: RunFactory
) -> None:
    discord.script("/markets", FakeResponse(500, {}))  # Gamma is down: the analysis degrades
    trade = make_trade(size=200_000, price=0.075, timestamp=time.time() - 60)
    await store.add_trades([trade])
    runtime = make_runtime()
    analysis = runtime.queue(ANALYSIS.name)
    with pytest.raises(InvalidArgumentError, match="transactionId"):
        await analysis.add("analyse", {})
    ok = await analysis.add("analyse", {"transactionId": trade.trade_key})
    missing = await analysis.add("analyse", {"transactionId": "unknown"})
    await _drain(runtime)
    done = await ok.refresh()
    assert done.state == "completed" and done.returnvalue["detected"]
    assert done.returnvalue["degraded"] == ["gamma: Gamma answered HTTP 500"]
    gone = await missing.refresh()
    assert gone.state == "failed" and gone.attempts_made == 1
    assert gone.failed_reason == "transaction unknown not found"
    assert len(discord.requests_to(HOOK)) == 1  # its alert was delivered once


async def test_whale_updates_job(store: Store, make_runtime: RunFactory) -> None:
    now = time.time()
    await store.add_trades(
        [make_trade(wallet=W[0], tx="0x1", size=30_000, price=0.5, timestamp=now, ingested_at=now)]
    )
    runtime = make_runtime({"BULLMQ_WHALE_UPDATE_BATCH_SIZE": "10"})
    job = await runtime.queue(WHALE_UPDATES.name).add("update-all-whales", None)
    await _drain(runtime)
    done = await job.refresh()
    assert done.state == "completed"
    assert done.returnvalue["walletsUpdated"] == 1 and done.returnvalue["errors"] == 0
    assert done.progress == {"batches": 1, "walletsUpdated": 1, "errors": 0}
    assert (await store.get_wallets([W[0]]))[W[0]].is_whale


def test_specs_match_the_design_table() -> None:
    table = {
        "polymarket-whale-updates": ("whale-updates", 1, 600.0, 2),
        "polymarket-anomaly-batch": ("anomaly-batch", 3, 45.0, 3),
        "polymarket-analysis": ("analysis", 10, 5.0, 2),
        "polymarket-alerts": ("alerts", 5, 10.0, 3),
        "polymarket-ingest": ("ingest", 1, 120.0, 2),  # not one of the BullMQ version's four
    }
    assert {
        s.name: (s.short_name, s.concurrency, s.timeout, s.attempts) for s in QUEUE_SPECS
    } == table
    for spec in QUEUE_SPECS:
        assert spec.backoff == Backoff("exponential", 2.0)
        assert spec.retention.completed.count == 100 and spec.retention.failed.count == 1000
    assert WHALE_UPDATES.schedule is not None and WHALE_UPDATES.schedule.cron == "0 * * * *"
    assert ANOMALY_BATCH.schedule is not None and ANOMALY_BATCH.schedule.every == 30.0
    assert ANALYSIS.schedule is None and ALERTS.schedule is None


def test_the_application_registers_through_its_entry_point() -> None:
    """The engine names no application: the detector is found through the package's own
    entry point in the ``polyjobs`` group, as a third-party one would be."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="polyjobs") if ep.value == "polyjobs.processors"]
    assert [ep.name for ep in found] == ["polymarket"]
    assert "polymarket-analysis" not in PluginHost.load(entry_points=False).queue_specs()
    by_name = PluginHost.load(app="polymarket", extra=[App("other")])
    assert set(by_name.queue_specs()) == {spec.name for spec in QUEUE_SPECS}
    host = PluginHost.load()
    specs = host.queue_specs()
    for spec in QUEUE_SPECS:
        assert specs[spec.name] is spec
    assert {"store", "gamma", "alert_sink", "polymarket_config"} <= set(host.resources())


async def test_real_resources_sqlite_file_and_console_sink(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No webhook configured: alerts go to the console (as log records the CLI prints); the
    store is the configured SQLite file, shared with another connection (as `polyjobs
    enqueue` in another process would)."""
    caplog.set_level(logging.WARNING, logger="polyjobs.polymarket.alerts")
    url = f"sqlite:///{tmp_path}/polymarket.db"
    writer = SqliteStore.from_url(url)
    await writer.open()
    trades, expected = replayed_trades(time.time() - 60)
    await writer.add_trades(trades)
    async with open_backend("memory://") as backend:
        specs = [spec.with_changes(backoff=FAST) for spec in QUEUE_SPECS]
        runtime = Runtime(
            specs,
            backend,
            resources=resource_factories(),
            settings={"POLYJOBS_STORE": url},
            schedule=False,
        )
        await runtime.queue(ANOMALY_BATCH.name).add("batch-detection", {})
        await _drain(runtime)
    alerts = [r for r in caplog.records if getattr(r, "event", None) == "alert"]
    printed = "\n".join(r.getMessage() for r in alerts)
    assert printed.count("[alert ") == len(expected)
    assert "not trading advice" in printed
    for key in expected:
        trade = await writer.get_trade(key)
        assert trade is not None and trade.anomaly is not None
        alert = await writer.get_alert(trade.anomaly["alertId"])
        assert alert is not None and alert.status == "sent"
    await writer.close()


def test_the_applications_setting_names_are_declared_by_it_not_by_the_engine(
    tmp_path: Any,
) -> None:
    """``BULLMQ_*``, ``MONGODB_URI`` and ``DISCORD_WEBHOOK_URL`` reach the detector because it
    declares them (``polyjobs_setting_names``); the engine alone passes none of them."""
    from polyjobs.settings import apply_queue_overrides, load_settings

    environ = {
        "BULLMQ_ANALYSIS_CONCURRENCY": "7",
        "BULLMQ_ANOMALY_BATCH_INTERVAL": "2000",
        "BULLMQ_WHALE_UPDATE_BATCH_SIZE": "10",
        "MONGODB_URI": "mongodb://h/db",
        "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/x",
    }
    bare = load_settings(flags={}, environ=environ, cwd=tmp_path)
    assert not set(environ) & set(bare.plain_values())
    plain = {s.name: s for s in apply_queue_overrides(QUEUE_SPECS, bare)}
    assert plain[ANALYSIS.name].concurrency == ANALYSIS.concurrency
    declared = PluginHost.load().setting_names()
    resolved = load_settings(flags={}, environ=environ, cwd=tmp_path, declared=declared)
    assert set(environ) <= set(resolved.plain_values())
    specs = {s.name: s for s in apply_queue_overrides(QUEUE_SPECS, resolved)}
    assert specs[ANALYSIS.name].concurrency == 7
    batch = specs[ANOMALY_BATCH.name].schedule
    assert batch is not None and batch.every == 2.0
    with_app = PluginHost.load(app=App("other")).setting_names()
    assert "MONGODB_URI" not in with_app.names  # another application chosen: not the detector's
