"""A Job's ``data`` and ``options``: what ``Queue.add`` returns reads like a stored job, and
neither is worked out again on every read."""

from __future__ import annotations

from polyjobs import Backoff, Queue, open_backend


async def test_an_added_jobs_data_is_a_fresh_json_copy_decoded_when_read() -> None:
    payload = {"items": (1, 2), "nested": {"a": [1]}}
    async with open_backend("memory://") as backend:
        job = await Queue("q", backend).add("x", payload)
        assert job._data_json is not None  # not decoded by add
        assert job.data == {"items": [1, 2], "nested": {"a": [1]}}  # as a worker sees it
        assert job.data is job.data and job._data_json is None
        payload["nested"]["a"].append(2)
        assert job.data["nested"]["a"] == [1]  # a copy, not the caller's object
        assert job.to_dict()["data"] == job.data
        job.data = {"replaced": True}
        assert job.data == {"replaced": True}
        again = await Queue("q", backend).add("x", None, job_id=job.id)  # exists: read back
        assert again.data == {"items": [1, 2], "nested": {"a": [1]}}


async def test_options_are_parsed_once_and_again_when_opts_are_replaced() -> None:
    async with open_backend("memory://") as backend:
        job = await Queue("q", backend).add("x", 1, attempts=3, backoff=Backoff("fixed", 2.0))
        first = job.options
        assert first.attempts == 3 and first.backoff == Backoff("fixed", 2.0)
        assert job.options is first
        job.opts = {**job.opts, "attempts": 5}
        assert job.options.attempts == 5 and job.options is not first
