"""A Job's ``data`` and ``options``: what ``Queue.add`` returns reads like a stored job, and
neither is worked out again on every read."""

from __future__ import annotations

import pytest

from polyjobs import Backoff, Queue, open_backend
from polyjobs.errors import InvalidArgumentError


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


async def test_an_added_jobs_opts_are_its_own_copy_once_read() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("q", backend, default_options={"attempts": 2})
        shared = {"priority": 4}
        first, second, plain = await queue.add_bulk([("a", 1, shared), ("b", 2, shared), ("c", 3)])
        first.opts["priority"] = 9  # (not the way to change them, but it must stay local)
        assert second.opts["priority"] == 4 and first.opts is not second.opts
        plain.opts["attempts"] = 7
        again = await queue.add("d", 4)
        plain_stored = await queue.require_job(plain.id)
        assert again.opts["attempts"] == 2 == plain_stored.opts["attempts"]
        stored = await queue.get_job(first.id)
        assert stored is not None and stored.opts["priority"] == 4
        assert first.state == second.state == "waiting" and first.priority == 4


async def test_a_bulk_adds_shared_options_object_holds_for_every_job_it_is_given_to() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("q", backend)
        shared = {"priority": 3, "delay": 60}
        jobs = await queue.add_bulk([("a", i, shared) for i in range(3)] + [("b", 0, {})])
        assert [(j.priority, j.state) for j in jobs] == [(3, "delayed")] * 3 + [(0, "waiting")]

        def reused() -> object:  # a generator may change one options object between jobs
            opts: dict[str, int] = {}
            for priority in (1, 2, 3):
                opts["priority"] = priority
                yield ("g", priority, opts)

        made = await queue.add_bulk(reused())  # type: ignore[arg-type]
        assert [j.priority for j in made] == [1, 2, 3]
        stored = [await queue.get_job(j.id) for j in made]
        assert [s.priority for s in stored if s is not None] == [1, 2, 3]
        bad = {"priority": -1}
        before = (await queue.counts())["waiting"]
        for batch in ([("x", 1, bad)], [("x", 1, {}), ("y", 2, bad), ("z", 3, bad)]):
            with pytest.raises(InvalidArgumentError, match="priority must be within"):
                await queue.add_bulk(batch)
        assert (await queue.counts())["waiting"] == before  # nothing of a bad batch stored


async def test_equal_options_of_a_bulk_add_are_checked_with_their_types() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("q", backend)
        jobs = await queue.add_bulk(
            [("a", i, {"priority": i % 2, "delay": "1s"}) for i in range(4)]
        )
        assert [(j.priority, j.run_at - j.timestamp) for j in jobs] == [(0, 1.0), (1, 1.0)] * 2
        with pytest.raises(InvalidArgumentError, match="priority must be an integer, got True"):
            await queue.add_bulk([("a", 1, {"priority": 1}), ("b", 2, {"priority": True})])
        assert (await queue.counts())["delayed"] == 4


async def test_a_bulk_adds_bad_jobs_get_one_clear_error_each() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("q", backend, max_payload=64)
        (one,) = await queue.add_bulk([("only-name",)])
        assert one.name == "only-name" and one.data is None and one.opts["attempts"] == 1
        cases = [
            ([("a", 1), ("b", {1, 2})], "^data of job 'b' is not JSON: Object of type set"),
            ([("é", "x" * 70)], "^data of job 'é' is 72 bytes of JSON, over the limit of 64"),
            ([("a", 1, {}, "extra")], r"^bulk job must be \(name, data\[, options\]\)"),
            ([()], r"^bulk job must be \(name, data\[, options\]\): \(\)"),
            ([{"name": "a", "opts": {}}], r"^unknown keys in bulk job: \['opts'\]"),
            ([("", 1)], "^job name must be a non-empty string"),
        ]
        for batch, message in cases:
            with pytest.raises(InvalidArgumentError, match=message):
                await queue.add_bulk(batch)  # type: ignore[arg-type]
        assert (await queue.counts())["waiting"] == 1


async def test_a_bulk_adds_own_job_ids_are_stored_as_a_single_add_stores_them() -> None:
    async with open_backend("memory://") as backend:
        queue = Queue("q", backend, default_options={"attempts": 3})
        opts = [{"job_id": f"j{i}", "priority": 2} for i in range(3)] + [{"job_id": 7}]
        jobs = await queue.add_bulk([("a", i, o) for i, o in enumerate(opts)])
        assert [j.id for j in jobs] == ["j0", "j1", "j2", "7"]
        alone = await queue.add("a", 0, job_id="solo", priority=2)
        for job in jobs[:3]:
            stored = await queue.require_job(job.id)
            assert stored.opts == job.opts == {**alone.opts, "job_id": job.id}
            assert stored.priority == 2 and stored.options.attempts == 3
        again = await queue.add_bulk([("b", 1, {"job_id": "j1"})])  # exists: read back
        assert again[0].data == 1 and again[0].name == "a"
        for bad in (
            {"job_id": "a b"},
            {"job_id": "ok", "priority": -1},
            {"priority": -1, "job_id": ""},
        ):
            with pytest.raises(InvalidArgumentError) as in_bulk:
                await queue.add_bulk([("c", 1, {"job_id": "fine"}), ("d", 2, bad)])
            with pytest.raises(InvalidArgumentError) as alone_error:
                await queue.add("d", 2, **bad)
            assert str(in_bulk.value) == str(alone_error.value)
        assert await queue.get_job("fine") is None
