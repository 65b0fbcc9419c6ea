"""The backend contract suite: every polyjobs backend must pass it.

A backend's test module subclasses :class:`BackendContract` and names the URL to open::

    # tests/contract/test_memory.py
    from polyjobs.testing import BackendContract

    class TestMemoryBackend(BackendContract):
        url = "memory://"

That is the whole interface, and it is stable:

* ``url`` (class attribute): what the default ``backend`` fixture opens with
  :func:`polyjobs.open_backend`.
* ``backend`` (async fixture): yields an open :class:`~polyjobs.backend.Backend` and closes it
  afterwards. Override it to start a server, pick a temporary file, or pass plugins::

      @pytest_asyncio.fixture
      async def backend(self, tmp_path):
          async with open_backend(f"sqlite:///{tmp_path}/jobs.db") as b:
              yield b

* ``queue_name`` (async fixture): a queue name unique to the test (``contract-<hex>``),
  obliterated after it. ``queue`` is a :class:`~polyjobs.Queue` on it.
* :meth:`~polyjobs.testing.support.ContractBase.open_other`: a second, independent connection
  to the same storage, used only by tests of the ``shared`` and ``durable`` capabilities;
  override it together with ``backend`` when a plain ``open_backend(self.url)`` does not
  reach the same storage.

Tests that need a capability (:data:`~polyjobs.backend.CAP_SHARED`,
:data:`~polyjobs.backend.CAP_DURABLE`) skip themselves when ``backend.capabilities`` lacks
it; nothing is ever skipped by backend name.

A backend that fails a test for a known reason is best listed, by test id, as a strict
``xfail`` in the ``conftest.py`` beside its test module (see ``tests/contract/conftest.py``),
so the entry has to go once the backend is fixed.

Requirements: ``pytest`` and ``pytest-asyncio`` (the ``test`` extra). Every test is a
coroutine marked ``asyncio``, and the fixtures are ``pytest_asyncio`` fixtures, so the suite
runs in the ``strict`` as well as the ``auto`` mode of pytest-asyncio. Every wait is bounded
(about 10 s at most; 30 s for the thousand-job test), and the suite runs in well under 30 s on ``memory://``.

What it covers, one module each under :mod:`polyjobs.testing`:

* ``suite_adding``: FIFO, LIFO, priorities (FIFO within a level), delays (never early),
  promote, job-id dedupe, ``add_bulk``, ``get_job``, blocking fetch and its wake-ups.
* ``suite_retries``: attempts, fixed and exponential backoff, timeouts, ``UnrecoverableError``,
  ``RetryAfter``, ``Job.wait``, worker events.
* ``suite_workers``: concurrency, sync processors, pause/resume, graceful and forced close,
  release, leases and their renewal, stalled-job recovery and ``max_stalls``, ``lost``
  finishes, riding out backend errors (injected by wrapping the backend, never by patching
  it), idle workers that do not poll, the worker registry.
* ``suite_state``: retention by count, age and both; progress and logs; exact counts.
* ``suite_admin``: listing and paging, drain, clean, remove, retry, retry_failed, obliterate,
  and the ``shared`` / ``durable`` capabilities.
* ``suite_schedules``: ``every`` and ``cron`` (seconds field, timezones) giving one job per
  slot under three schedulers, upsert semantics, removal, the compare-and-set step and the
  missed-run policies.
* ``suite_validation``: bad arguments raise ``InvalidArgumentError`` before anything is stored.
* ``suite_ratelimit`` (capability ``rate-limit``): no window sees more starts than the limit
  across workers, held-back jobs are not attempts, ``RateLimitError`` holds the whole queue.
* ``suite_control`` (capability ``control``): ordered control messages; a stop request stops
  every Runtime sharing the backend.
* ``suite_flows`` (capability ``flows``; ``flows-across-queues`` for flows over several
  queues): parents wait in ``waiting-children``, children's values, several parents, the four
  failure policies, stalled children, and removal, cleaning, draining, retention and
  obliteration keeping the edges consistent.
* ``suite_dedup`` (capability ``dedup``): simple, throttle, extend, debounce and
  keep-last-if-active windows, ``remove_deduplication_key``, the ``deduplicated`` event.
* ``suite_metrics`` (capability ``metrics``): per-minute completed/failed counts and processing
  time kept by ``finish``, kept 24 h, forgotten by ``obliterate``.
* ``suite_groups`` (capability ``groups``): groups take turns (one with many jobs does not
  hold the others back), priorities order each group, group concurrency across workers and
  after a stall, group rate limits, held groups and ``GroupRateLimitError``.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from polyjobs.testing.suite_adding import AddingContract
from polyjobs.testing.suite_admin import AdminContract
from polyjobs.testing.suite_cancel import CancelContract
from polyjobs.testing.suite_concurrency import ConcurrencyContract
from polyjobs.testing.suite_control import ControlContract
from polyjobs.testing.suite_dedup import DedupContract
from polyjobs.testing.suite_flows import FlowsContract
from polyjobs.testing.suite_groups import GroupsContract
from polyjobs.testing.suite_metrics import MetricsContract
from polyjobs.testing.suite_ratelimit import RateLimitContract
from polyjobs.testing.suite_retries import RetriesContract
from polyjobs.testing.suite_schedules import SchedulesContract
from polyjobs.testing.suite_state import StateContract
from polyjobs.testing.suite_validation import ValidationContract
from polyjobs.testing.suite_workers import WorkersContract


class BackendContract(
    AddingContract,
    RetriesContract,
    WorkersContract,
    StateContract,
    AdminContract,
    SchedulesContract,
    ValidationContract,
    RateLimitContract,
    ControlContract,
    FlowsContract,
    DedupContract,
    MetricsContract,
    CancelContract,
    ConcurrencyContract,
    GroupsContract,
):
    """Subclass with ``url = "<scheme>://..."`` (name the subclass ``Test...``)."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]
