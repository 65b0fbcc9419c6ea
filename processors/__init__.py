"""The Polymarket job processors and their QueueSpecs (contributed through plugin hooks).

``polyjobs_queue_specs`` contributes the five queues (whale updates, anomaly batch, analysis,
alerts, ingest); ``polyjobs_resources`` the store, the Gamma client, the alert sink and the
domain config that processors reach as ``job.context[...]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from polyjobs.hookspecs import ResourceFactory, hookimpl
from polyjobs.processors.queues import (
    ALERTS,
    ANALYSIS,
    ANOMALY_BATCH,
    INGEST,
    QUEUE_SPECS,
    WHALE_UPDATES,
)
from polyjobs.processors.resources import resource_factories

if TYPE_CHECKING:
    from polyjobs.runtime import QueueSpec

__all__ = ["ALERTS", "ANALYSIS", "ANOMALY_BATCH", "INGEST", "QUEUE_SPECS", "WHALE_UPDATES"]


@hookimpl
def polyjobs_queue_specs() -> Sequence[QueueSpec]:
    return QUEUE_SPECS


@hookimpl
def polyjobs_resources() -> Mapping[str, ResourceFactory]:
    return resource_factories()
