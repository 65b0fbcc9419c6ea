"""The five Polymarket job functions and their QueueSpecs.

Each function is thin: it reads ``job.data``, takes its dependencies from ``job.context``
(see :mod:`polyjobs.processors.resources`) and calls the domain.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from polyjobs.backend import CAP_GROUPS
from polyjobs.errors import InvalidArgumentError, UnrecoverableError
from polyjobs.options import Backoff, RateLimit, check_group
from polyjobs.processors import ALERT_SINK, CONFIG, GAMMA, STORE, TRADE_SOURCE
from polyjobs.spec import QueueSpec, Retention, ScheduleSpec

if TYPE_CHECKING:
    from polyjobs.job import Job
    from polyjobs.polymarket.config import DomainConfig
    from polyjobs.polymarket.models import Alert, Trade
    from polyjobs.queue import Queue

# The domain (httpx, the store, the detectors) is imported by the job functions when they
# first run: a command that only needs the queue specs (stats, enqueue) does not load it.

log = logging.getLogger(__name__)


def _data(job: Job) -> Mapping[str, Any]:
    return job.data if isinstance(job.data, Mapping) else {}


def _config(job: Job) -> DomainConfig:
    config: DomainConfig = job.context[CONFIG]
    return config


# -- whale-updates ---------------------------------------------------------------------------
def _check_whale_data(data: Any) -> None:
    if data is None:
        return
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(
            'whale-updates job data must be an object, e.g. {"batchSize": 1000}'
        )
    size = data.get("batchSize")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InvalidArgumentError(f"whale-updates batchSize must be an integer >= 1, got {size!r}")


async def update_whales(job: Job) -> dict[str, Any]:
    """Recompute wallet statistics (``{"batchSize": n, "full": bool}``, both optional)."""
    data = _data(job)  # checked by the queue's validate (at add, and by the Runtime)
    config = _config(job)
    from polyjobs.polymarket.whales import WhaleDetector

    batch_size = int(data.get("batchSize") or config.whale_batch_size)
    await job.log(f"Starting whale updates (batch: {batch_size})")
    await job.update_progress(0)
    detector = WhaleDetector(job.context[STORE], config.whales)
    result = await detector.update(
        batch_size=batch_size, full=bool(data.get("full")), on_progress=job.update_progress
    )
    await job.log(f"Completed: {result.wallets_updated} wallets updated, {result.whales} whales")
    return result.to_json()


def grouped(queue: Queue, group: str) -> dict[str, str]:
    """``{"group": group}`` on a backend with job groups, else nothing (a backend without
    groups refuses a grouped job; there the jobs share the queue as before); nothing too
    for a name no group may have (odd upstream data never stops the job that enqueues)."""
    if CAP_GROUPS not in queue.backend.capabilities:
        return {}
    try:
        return {"group": check_group(group)}
    except InvalidArgumentError:
        return {}


# -- anomaly-batch ---------------------------------------------------------------------------
def _alert_enqueuer(job: Job) -> Any:
    # alerts are grouped by where they go (the sink's key, never a secret): one webhook's
    # 429 holds only its own alerts (GroupRateLimitError), never another channel's
    sink_key = str(job.context[ALERT_SINK].key)

    async def enqueue(alert: Alert) -> None:
        alerts = job.context.queue(ALERTS.name)
        await alerts.add(
            "deliver", {"alertId": alert.id}, job_id=alert.id, **grouped(alerts, sink_key)
        )

    return enqueue


#: Trades read and checked per step of an anomaly batch (its progress is reported per step).
CHECK_CHUNK = 2000


async def check_anomalies(job: Job) -> dict[str, Any]:
    """Check the unchecked trades, oldest first however old, at most ``batch_limit`` per job
    (a backlog drains over successive jobs); mark them checked in bulk, one write per step.

    Returns the counts of :class:`~polyjobs.polymarket.anomaly.BatchResult` and ``remaining``,
    the unchecked trades left for the next jobs."""
    from polyjobs.polymarket.anomaly import AnomalyDetector, BatchResult

    config = _config(job)
    store = job.context[STORE]
    limits = config.anomaly
    detector = AnomalyDetector(store, limits, enqueue_alert=_alert_enqueuer(job))
    total = BatchResult()
    remaining = None
    while total.checked < limits.batch_limit:
        size = min(CHECK_CHUNK, limits.batch_limit - total.checked)
        trades = await store.unchecked_trades(None, size)
        if not trades:
            break
        total.merge(await detector.check_batch(trades))
        remaining = await store.count_unchecked()
        progress = {"checked": total.checked, "alerts": total.alerts, "remaining": remaining}
        await job.update_progress(progress)
        if len(trades) < size:
            break
    if remaining is None:
        remaining = await store.count_unchecked()
    if total.skipped:
        log.warning(
            "anomaly batch: %d trade(s) older than POLYJOBS_ANOMALY_MAX_AGE (%gs) marked"
            " checked without signals or alerts",
            total.skipped,
            limits.max_age,
        )
    await job.log(
        f"checked {total.checked} trades ({total.detected} detected, {total.raised} new alerts,"
        f" {total.suppressed} held back by the cooldown, {total.skipped} skipped as too old);"
        f" {remaining} unchecked left"
    )
    return {**total.to_json(), "remaining": remaining}


# -- analysis --------------------------------------------------------------------------------
def _check_analysis_data(data: Any) -> None:
    tx = data.get("transactionId") if isinstance(data, Mapping) else None
    if not isinstance(tx, str) or not tx:
        raise InvalidArgumentError(
            "analysis job data needs a transactionId (the trade's tradeKey), "
            f'e.g. {{"transactionId": "<tradeKey>"}}; got {data!r}'[:300]
        )


async def analyse_transaction(job: Job) -> dict[str, Any]:
    """Analyse one trade: ``{"transactionId": <tradeKey>}`` (checked by the queue's
    validate, at add and by the Runtime)."""
    from polyjobs.polymarket.analysis import AnalysisPipeline
    from polyjobs.polymarket.anomaly import AnomalyDetector

    trade_key = str(_data(job)["transactionId"])
    store = job.context[STORE]
    detector = AnomalyDetector(store, _config(job).anomaly, enqueue_alert=_alert_enqueuer(job))
    pipeline = AnalysisPipeline(store, job.context.get(GAMMA), detector)
    analysis = await pipeline.process(trade_key)
    if analysis is None:
        raise UnrecoverableError(f"transaction {trade_key} not found")
    result = {
        "transactionId": trade_key,
        "score": analysis["score"],
        "detected": analysis["detected"],
        "signals": [s["name"] for s in analysis["signals"]],
        "alertId": analysis["alertId"],
        "raised": analysis["raised"],
        "degraded": analysis["degraded"],
    }
    if analysis["suppressed"]:  # detected, but no alert: say why
        result["suppressed"] = analysis["suppressed"]
        result["cooldownAlertId"] = analysis["cooldownAlertId"]
    return result


# -- alerts ----------------------------------------------------------------------------------
def _check_alert_data(data: Any) -> None:
    alert_id = data.get("alertId") if isinstance(data, Mapping) else None
    if not isinstance(alert_id, str) or not alert_id:
        raise InvalidArgumentError('alerts job data needs an alertId, e.g. {"alertId": "<id>"}')


async def deliver_alert(job: Job) -> dict[str, Any]:
    """Deliver one stored alert: ``{"alertId": <id>}`` (checked by the queue's validate, at
    add and by the Runtime). Never posts an alert twice."""
    from polyjobs.polymarket.alerts import AlertDelivery

    delivery = AlertDelivery(
        job.context[STORE], job.context[ALERT_SINK], lease=_config(job).alert_lease
    )
    return await delivery.deliver(str(_data(job)["alertId"]))


# -- ingest ----------------------------------------------------------------------------------
def analysis_job_id(trade_key: str) -> str:
    """The analysis job of a trade: one per trade, however often its page is read."""
    return f"trade-{trade_key}"


async def ingest_trades(job: Job) -> dict[str, Any]:
    """Read new trades from the source (Data API or replay) since the stored watermark, store
    them, and send the large ones straight to the analysis queue."""
    from polyjobs.polymarket.ingest import poll_once

    config = _config(job)
    analysis = job.context.queue(ANALYSIS.name)

    async def enqueue(trade: Trade) -> None:
        # grouped by wallet: a bot's burst of trades takes turns with every other wallet
        # instead of delaying their analysis, and one wallet's trades run one at a time
        await analysis.add(
            "analyse",
            {"transactionId": trade.trade_key},
            job_id=analysis_job_id(trade.trade_key),
            priority=1,
            **grouped(analysis, f"wallet-{trade.proxy_wallet}"),
        )

    result = await poll_once(
        job.context[STORE],
        job.context[TRADE_SOURCE],
        min_analysis=config.ingest.min_analysis,
        enqueue_analysis=enqueue,
    )
    await job.log(
        f"{result.source}: {result.received} rows, {result.stored} new trades, "
        f"{result.skipped} skipped, {result.analysis} sent to analysis"
    )
    return result.to_json()


# -- the queues (one constant each; names are never repeated elsewhere) ----------------------
_BACKOFF = Backoff("exponential", 2.0)
_RETENTION = Retention()  # keep the last 100 completed and the last 1000 failed jobs

WHALE_UPDATES = QueueSpec(
    name="polymarket-whale-updates",
    short_name="whale-updates",
    processor=update_whales,
    concurrency=1,
    timeout=600.0,
    attempts=2,
    backoff=_BACKOFF,
    retention=_RETENTION,
    schedule=ScheduleSpec(
        key="update-all-whales", cron="0 * * * *", name="update-all-whales", no_overlap=True
    ),
    description="recompute wallet statistics and flag whales (hourly)",
    validate=_check_whale_data,
)
ANOMALY_BATCH = QueueSpec(
    name="polymarket-anomaly-batch",
    short_name="anomaly-batch",
    processor=check_anomalies,
    concurrency=3,
    timeout=45.0,
    attempts=3,
    backoff=_BACKOFF,
    retention=_RETENTION,
    schedule=ScheduleSpec(
        key="batch-detection", every=30.0, name="batch-detection", no_overlap=True
    ),
    description="check unchecked trades for anomalies, oldest first (every 30 s)",
)
ANALYSIS = QueueSpec(
    name="polymarket-analysis",
    short_name="analysis",
    processor=analyse_transaction,
    concurrency=10,
    timeout=5.0,
    attempts=2,
    backoff=_BACKOFF,
    retention=_RETENTION,
    description='analyse one transaction on demand ({"transactionId": ...})',
    validate=_check_analysis_data,
    group_concurrency=1,  # one trade of a wallet at a time (jobs grouped by wallet)
)
ALERTS = QueueSpec(
    name="polymarket-alerts",
    short_name="alerts",
    processor=deliver_alert,
    concurrency=5,
    timeout=10.0,
    attempts=3,
    backoff=_BACKOFF,
    retention=_RETENTION,
    description='deliver one alert to Discord ({"alertId": ...})',
    validate=_check_alert_data,
    # one Discord webhook takes about 5 requests per 2 s (and 30 messages a minute per
    # channel): across every worker, not per worker
    rate_limit=RateLimit(5, 2.0),
)
INGEST = QueueSpec(
    name="polymarket-ingest",
    short_name="ingest",
    processor=ingest_trades,
    concurrency=1,
    timeout=120.0,
    attempts=2,
    backoff=_BACKOFF,
    retention=_RETENTION,
    schedule=ScheduleSpec(key="ingest-trades", every=15.0, name="ingest-trades", no_overlap=True),
    description="read new trades from the Data API or a replay (every 15 s)",
)
QUEUE_SPECS = (WHALE_UPDATES, ANOMALY_BATCH, ANALYSIS, ALERTS, INGEST)
