"""The Polymarket detector: an application of polyjobs, registered through this package's
entry point in the ``polyjobs`` group (``pyproject.toml``), as a third-party one would be.

``polyjobs_queue_specs`` contributes the five queues (whale updates, anomaly batch, analysis,
alerts, ingest); ``polyjobs_resources`` the store, the Gamma client, the alert sink and the
domain config that processors reach as ``job.context[...]``; ``polyjobs_setting_names`` the
environment variables it reads (the BullMQ version's names included);
``polyjobs_demo`` what ``polyjobs start --demo`` runs (:mod:`polyjobs.processors.demo`);
``polyjobs_listings`` the board's alerts and wallets pages (:mod:`polyjobs.processors.listings`);
``polyjobs_cli_commands`` the commands ``polyjobs alerts``, ``polyjobs wallets`` and
``polyjobs replay`` (:mod:`polyjobs.processors.commands`, imported when one runs).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from polyjobs.hookspecs import Demo, ResourceFactory, SettingNames, hookimpl

if TYPE_CHECKING:
    from polyjobs.listings import Listing
    from polyjobs.processors.queues import (
        ALERTS,
        ANALYSIS,
        ANOMALY_BATCH,
        INGEST,
        QUEUE_SPECS,
        WHALE_UPDATES,
    )
    from polyjobs.spec import QueueSpec

#: The resources' names in ``job.context`` (opened by :mod:`polyjobs.processors.resources`).
CONFIG = "polymarket_config"
STORE = "store"
GAMMA = "gamma"
ALERT_SINK = "alert_sink"
TRADE_SOURCE = "trade_source"

#: The variables the detector reads besides ``POLYJOBS_*``: its store, its webhook, and the
#: BullMQ version's names (``BULLMQ_WHALE_UPDATE_BATCH_SIZE`` and the queue settings below,
#: honoured next to ``POLYJOBS_<QUEUE>_<FIELD>``, which wins; queues by short name).
SETTING_NAMES = SettingNames(
    names=("MONGODB_URI", "DISCORD_WEBHOOK_URL"),
    prefixes=("BULLMQ_",),
    queue_fields={
        "BULLMQ_ANALYSIS_CONCURRENCY": ("analysis", "concurrency", 1.0),
        "BULLMQ_ALERTS_CONCURRENCY": ("alerts", "concurrency", 1.0),
        "BULLMQ_ANOMALY_BATCH_INTERVAL": ("anomaly-batch", "every", 0.001),  # milliseconds
    },
)

__all__ = ["ALERTS", "ANALYSIS", "ANOMALY_BATCH", "INGEST", "QUEUE_SPECS", "WHALE_UPDATES"]


def __getattr__(name: str) -> Any:
    """The queues are imported on first use: a process that runs another application (``-A``)
    registers this plugin without importing the detector (httpx, pymongo, rich...)."""
    if name in __all__:
        return getattr(importlib.import_module("polyjobs.processors.queues"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def polyjobs_queue_specs() -> Sequence[QueueSpec]:
    from polyjobs.processors.queues import QUEUE_SPECS

    return QUEUE_SPECS


@hookimpl
def polyjobs_resources() -> Mapping[str, ResourceFactory]:
    from polyjobs.processors.resources import resource_factories

    return resource_factories()


@hookimpl
def polyjobs_setting_names() -> SettingNames:
    return SETTING_NAMES


@hookimpl
def polyjobs_listings() -> Sequence[Listing]:
    from polyjobs.processors.listings import LISTINGS

    return LISTINGS


@hookimpl
def polyjobs_demo() -> Demo:
    from polyjobs.processors import demo

    return demo


@hookimpl
def polyjobs_cli_commands() -> Mapping[str, str]:
    return {
        "alerts": "polyjobs.processors.commands:alerts",
        "wallets": "polyjobs.processors.commands:wallets",
        "replay": "polyjobs.processors.commands:replay",
    }
