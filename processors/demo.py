"""``polyjobs start --demo``: all five queues on a replayed file, in a throw-away state dir.

:func:`prepare_demo` makes a temporary state directory holding the embedded job backend, the
embedded store and the synthetic trades (:mod:`polyjobs.polymarket.synthetic`, the same rows
as ``examples/trades.jsonl``), and returns the settings that point polyjobs at them: the
replay source, console alerts (a configured Discord webhook is ignored), no Gamma lookups
(the markets are made up), so the demo needs no network. :func:`demo_specs`
shortens the ingest and anomaly-batch intervals so that a minute shows everything, and
:func:`run_demo` runs a :class:`~polyjobs.runtime.Runtime` built from them:

- normally: one ingest job at once and one whale-updates job 10 s later (so that it has
  trades to look at), then the schedules, until SIGINT/SIGTERM; the file plays at 240 x real
  time (its 4 hours in about a minute);
- with ``burst``: the whole file at once (replay speed 0), then one whale update and one
  anomaly batch, and it returns when every queue is idle, after reporting a summary.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyjobs.polymarket.synthetic import generate
from polyjobs.processors.queues import ALERTS, ANALYSIS, ANOMALY_BATCH, INGEST, WHALE_UPDATES
from polyjobs.runtime import QueueSpec, Runtime, ScheduleSpec

DEMO_SPEED = 240.0
DEMO_EVERY = {INGEST.name: 2.0, ANOMALY_BATCH.name: 5.0}
WHALE_DELAY = 10.0
JOB_WAIT = 120.0


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """Where the demo keeps its state, and the settings that point polyjobs there."""

    home: Path
    backend_url: str
    settings: dict[str, str] = field(default_factory=dict)
    trades: int = 0


def prepare_demo(*, burst: bool = False, home: Path | None = None) -> DemoSetup:
    """Create the state directory (a new temporary one unless ``home`` is given) and the
    replay file; return the backend URL and the settings overrides."""
    home = Path(tempfile.mkdtemp(prefix="polyjobs-demo-")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    synthetic = generate()
    trades = home / "trades.jsonl"
    synthetic.write(trades, home / "trades.planted.json")
    settings = {
        "POLYJOBS_STORE": f"sqlite:///{home / 'polymarket.db'}",
        "POLYJOBS_INGEST_SOURCE": f"replay:{trades}",
        "POLYJOBS_INGEST_REPLAY_SPEED": "0" if burst else f"{DEMO_SPEED:g}",
        "DISCORD_WEBHOOK_URL": "",  # console alerts, whatever the environment says
        "POLYJOBS_GAMMA_ENABLED": "false",  # the markets are made up: nothing to look up
    }
    return DemoSetup(home, f"sqlite:///{home / 'polyjobs.db'}", settings, len(synthetic.rows))


def demo_specs(specs: Iterable[QueueSpec]) -> list[QueueSpec]:
    """The specs with the demo's shorter intervals (ingest every 2 s, anomaly batch 5 s), and
    no rate limit on alerts: they go to the console, not to a Discord webhook."""
    out = []
    for spec in specs:
        if spec.name == ALERTS.name:
            spec = spec.with_changes(rate_limit=None)
        every = DEMO_EVERY.get(spec.name)
        if every is not None and spec.schedule is not None:
            s = spec.schedule
            spec = spec.with_changes(
                schedule=ScheduleSpec(s.key, every=every, name=s.name, data=s.data, missed=s.missed)
            )
        out.append(spec)
    return out


async def run_demo(
    runtime: Runtime,
    *,
    burst: bool = False,
    grace: float = 30.0,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the demo on ``runtime`` (built from :func:`demo_specs` with the settings of
    :func:`prepare_demo`); return a summary (``burst``: when every queue is idle)."""
    say = report or (lambda _text: None)
    if not burst:
        await seed_demo(runtime.context.queue, say)
        await runtime.run(grace=grace)
        return {}
    started = time.monotonic()
    await runtime.start()
    try:
        summary = await _burst(runtime, say)
        await until_idle(runtime)
        summary["queues"] = {name: await q.counts() for name, q in runtime.queues.items()}
        alerts = summary["queues"].get(ALERTS.name, {})
        summary["alerts"] = alerts.get("completed", 0) + alerts.get("failed", 0)
        summary["seconds"] = round(time.monotonic() - started, 2)
    finally:
        await runtime.stop(grace)
    completed = {name: counts["completed"] for name, counts in summary["queues"].items()}
    say(
        f"demo: {summary['stored']} trades ingested, {summary['analysis']} sent to analysis, "
        f"{summary['wallets']} wallets updated, {summary['checked']} checked, "
        f"{summary['alerts']} alerts delivered in {summary['seconds']}s"
    )
    say("demo: completed jobs per queue: " + ", ".join(f"{n} {c}" for n, c in completed.items()))
    return summary


async def seed_demo(
    queue: Callable[[str], Any], report: Callable[[str], None] | None = None
) -> None:
    """The jobs the demo starts with (not ``burst``): one ingest job now, one whale-updates job
    :data:`WHALE_DELAY` later; ``queue(name)`` is a queue to add to. ``polyjobs start -P N
    --demo`` calls it once, in the supervising process; the worker processes run the queues."""
    await queue(INGEST.name).add("demo-start", None)
    await queue(WHALE_UPDATES.name).add(
        "demo-start", None, job_id="demo-whale-updates", delay=WHALE_DELAY
    )
    if report is not None:
        report(f"demo: replaying at {DEMO_SPEED:g}x; alerts print below; Ctrl-C stops")


async def _burst(runtime: Runtime, say: Callable[[str], None]) -> dict[str, Any]:
    queue = runtime.context.queue
    stored = analysis = rounds = 0
    while True:
        job = await queue(INGEST.name).add("demo-ingest", None, job_id=f"demo-ingest-{rounds}")
        result = await job.wait(JOB_WAIT)
        rounds += 1
        stored += int(result["stored"])
        analysis += int(result["analysis"])
        if result["exhausted"] or rounds >= 100:
            break
    say(f"demo: ingested {stored} trades; {analysis} large ones went straight to analysis")
    await until_idle(runtime, [ANALYSIS.name, ALERTS.name])
    whales = await queue(WHALE_UPDATES.name).add("demo-whales", None, job_id="demo-whale-updates")
    updated = await whales.wait(JOB_WAIT)
    say(f"demo: whale updates: {updated['walletsUpdated']} wallets, {updated['whales']} whales")
    batch = await queue(ANOMALY_BATCH.name).add("demo-batch", None, job_id="demo-anomaly-batch")
    checked = await batch.wait(JOB_WAIT)
    say(f"demo: anomaly batch: {checked['checked']} trades checked, {checked['alerts']} alerts")
    return {
        "stored": stored,
        "analysis": analysis,
        "wallets": updated["walletsUpdated"],
        "whales": updated["whales"],
        "checked": checked["checked"],
    }


async def until_idle(runtime: Runtime, names: Iterable[str] | None = None) -> None:
    """Until the queues (default: all of the runtime's) have nothing waiting, active or
    delayed, twice in a row."""
    chosen = list(names) if names is not None else list(runtime.queues)
    calm = 0
    while calm < 2:
        busy = 0
        for name in chosen:
            counts = await runtime.context.queue(name).counts()
            busy += counts["waiting"] + counts["active"] + counts["delayed"]
        calm = calm + 1 if busy == 0 else 0
        await asyncio.sleep(0.05)
