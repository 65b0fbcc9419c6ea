"""Contract: bad arguments raise ``PolyjobsError`` (``InvalidArgumentError``) at the API edge,
before anything is stored, never later in a worker."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from polyjobs.errors import InvalidArgumentError, PolyjobsError
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase
from polyjobs.worker import Worker


def _circular() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


NOT_JSON: list[Callable[[], Any]] = [
    lambda: {1, 2},
    lambda: math.nan,
    lambda: {"x": [1.0, math.inf]},
    lambda: object(),
    lambda: b"bytes",
    lambda: {"nested": {"set": frozenset()}},
    lambda: {("tuple", "key"): 1},
    _circular,
    lambda: "x" * (600 * 1024),  # over the default payload limit of 512 KiB
]

BAD_JOB_IDS: list[Any] = ["", "has space", "tab\there", "new\nline", "x" * 300, 1.5, ["id"]]

BAD_OPTIONS: list[dict[str, Any]] = [
    {"backoff": "linear"},
    {"backoff": {"type": "linear", "delay": 1}},
    {"backoff": {"type": "fixed", "delay": -1}},
    {"backoff": {"type": "exponential", "delay": 1, "jitter": 2}},
    {"backoff": {"type": "fixed", "delay": 1, "unknown": 1}},
    {"priority": -1},
    {"priority": "high"},
    {"attempts": 0},
    {"attempts": 1.5},
    {"delay": -1},
    {"delay": math.nan},
    {"delay": "soon"},
    {"timeout": 0},
    {"timeout": -3},
    {"remove_on_complete": -1},
    {"remove_on_complete": "sometimes"},
    {"remove_on_fail": {"count": 1, "size": 3}},
    {"retries": 3},
]

BAD_WORKER_OPTIONS: list[dict[str, Any]] = [
    {"concurrency": 0},
    {"concurrency": -2},
    {"concurrency": 1.5},
    {"concurrency": True},
    {"lease": 0},
    {"lease": -1},
    {"stalled_interval": 0},
    {"max_stalls": -1},
    {"block": -1},
    {"no_such_option": 1},
]


async def _noop(job: Job) -> None:
    return None


class ValidationContract(ContractBase):
    async def _nothing_stored(self, queue: Queue) -> None:
        counts = await queue.counts()
        assert sum(counts[s] for s in ("waiting", "active", "delayed", "completed", "failed")) == 0

    @pytest.mark.parametrize("make", NOT_JSON)
    async def test_data_that_is_not_json_is_refused(
        self, queue: Queue, make: Callable[[], Any]
    ) -> None:
        with pytest.raises(InvalidArgumentError):
            await queue.add("x", make())
        with pytest.raises(PolyjobsError):
            await queue.add_bulk([("ok", 1), ("x", make())])
        await self._nothing_stored(queue)

    @pytest.mark.parametrize("job_id", BAD_JOB_IDS)
    async def test_bad_job_ids_are_refused(self, queue: Queue, job_id: Any) -> None:
        with pytest.raises(InvalidArgumentError):
            await queue.add("x", None, job_id=job_id)
        await self._nothing_stored(queue)

    async def test_integer_job_id_is_accepted_as_text(self, queue: Queue) -> None:
        job = await queue.add("x", None, job_id=42)
        assert job.id == "42" and await queue.get_job("42") is not None

    @pytest.mark.parametrize("options", BAD_OPTIONS, ids=lambda o: repr(o)[:40])
    async def test_bad_job_options_are_refused(self, queue: Queue, options: dict[str, Any]) -> None:
        with pytest.raises(InvalidArgumentError):
            await queue.add("x", None, **options)
        with pytest.raises(InvalidArgumentError):
            await queue.add_bulk([("ok", 1), ("x", None, options)])
        await self._nothing_stored(queue)

    @pytest.mark.parametrize("options", BAD_WORKER_OPTIONS, ids=lambda o: repr(o)[:40])
    async def test_bad_worker_options_are_refused(
        self, queue: Queue, options: dict[str, Any]
    ) -> None:
        with pytest.raises(InvalidArgumentError):
            Worker(queue.name, _noop, queue.backend, **options)

    async def test_bad_names_are_refused(self, queue: Queue) -> None:
        with pytest.raises(InvalidArgumentError):
            await queue.add("", None)
        with pytest.raises(InvalidArgumentError):
            Queue("has space", queue.backend)
        with pytest.raises(InvalidArgumentError):
            Queue("", queue.backend)
        with pytest.raises(InvalidArgumentError):
            Worker(queue.name, "not callable", queue.backend)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await queue.add_bulk([{"name": "x", "data": 1, "opts": {}}])
        await self._nothing_stored(queue)

    async def test_bad_admin_arguments_are_refused(self, queue: Queue) -> None:
        with pytest.raises(InvalidArgumentError):
            await queue.jobs("finished")
        with pytest.raises(InvalidArgumentError):
            await queue.clean("completed", grace=0, limit=-1)
        with pytest.raises(InvalidArgumentError):
            await queue.clean("completed", grace=-1)
        with pytest.raises(InvalidArgumentError):
            await queue.get_job("")

    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {"every": 1, "cron": "* * * * *"},
            {"every": 0},
            {"every": -5},
            {"cron": "not a cron"},
            {"cron": "61 * * * *"},
            {"cron": "* * * * *", "tz": "Mars/Olympus_Mons"},
            {"every": 10, "tz": "UTC"},
            {"every": 10, "missed": "sometimes"},
            {"every": 10, "options": {"job_id": "fixed"}},
            {"every": 10, "options": {"backoff": "linear"}},
            {"every": 10, "data": {1, 2}},
        ],
        ids=lambda k: repr(k)[:40],
    )
    async def test_bad_schedules_are_refused(self, queue: Queue, kwargs: dict[str, Any]) -> None:
        with pytest.raises(InvalidArgumentError):
            await queue.upsert_schedule("key", **kwargs)
        assert await queue.schedules() == []
