"""Loaded with POLYJOBS_PLUGINS=...,short_lease_plugin: the workers of `polyjobs start` in this
process hold a job's lease 1 s and look for expired ones every 0.25 s, so that a job of a
SIGKILLed worker is run again within seconds rather than after the default 30 s lease."""

from __future__ import annotations

import functools

import polyjobs.runtime
from polyjobs.worker_options import WorkerOptions

setattr(  # noqa: B010 - the runtime's default options, for this test process only
    polyjobs.runtime,
    "WorkerOptions",
    functools.partial(WorkerOptions, lease=1.0, stalled_interval=0.25),
)
