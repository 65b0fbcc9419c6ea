"""Contract: job groups (``groups``): groups take turns, priorities order each group, and
each group may be capped (concurrency, rate limit) and held alone, whoever fetches."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import pytest

from polyjobs.backend import (
    CAP_CANCEL,
    CAP_DEDUP,
    CAP_FLOWS,
    CAP_GROUPS,
    Backend,
    Finish,
    JobRecord,
    NewJob,
)
from polyjobs.errors import GroupRateLimitError, InvalidArgumentError
from polyjobs.flow import FlowProducer
from polyjobs.job import Job
from polyjobs.options import RateLimit
from polyjobs.queue import Queue
from polyjobs.testing.support import WAIT, ContractBase


def _new(group: str | None, data: Any, priority: int = 0) -> NewJob:
    opts: dict[str, Any] = {} if group is None else {"group": group}
    return NewJob("j", json.dumps(data), opts, time.time(), priority=priority, group=group)


def _done(job_id: str) -> Finish:
    return Finish(job_id, "completed", 1, time.time(), returnvalue_json="null")


def _data(jobs: list[JobRecord]) -> list[Any]:
    return [j.data for j in jobs]


async def _one_by_one(backend: Backend, queue: str, n: int) -> list[Any]:
    taken = []
    for _ in range(n):
        got = await backend.fetch(queue, "w", 1, 30, 0)
        assert len(got) == 1
        taken.append(got[0].data)
    return taken


class GroupsContract(ContractBase):
    async def test_groups_take_turns(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_GROUPS)
        # the big group first: it must not hold the small ones back
        jobs = [_new("a", f"a{i}") for i in range(1, 7)]
        jobs += [_new("b", f"b{i}") for i in range(1, 3)]
        jobs += [_new("c", f"c{i}") for i in range(1, 3)]
        await backend.add(queue.name, jobs)
        assert (await queue.counts())["waiting"] == 10
        assert await _one_by_one(backend, queue.name, 4) == ["a1", "b1", "c1", "a2"]
        # one fetch of several goes on with the same turns
        got = await backend.fetch(queue.name, "w", 4, 30, 0)
        assert _data(got) == ["b2", "c2", "a3", "a4"]
        assert _data(await backend.fetch(queue.name, "w", 9, 30, 0)) == ["a5", "a6"]
        assert await backend.fetch(queue.name, "w", 9, 30, 0) == []
        assert all(j.opts.get("group") == j.data[0] for j in got)

    async def test_a_refilling_finish_serves_the_other_groups_before_the_busy_one(
        self, backend: Backend, queue: Queue
    ) -> None:
        # a busy worker takes only in the finish calls that hand its results back: the jobs
        # of groups that arrived meanwhile come before a second job of the group served last
        self.require(backend, CAP_GROUPS)
        await backend.add(queue.name, [_new("big", f"big{i}") for i in range(1, 9)])
        await backend.add(queue.name, [_new("s", "s1")])
        first = await backend.fetch(queue.name, "w", 3, 30, 0)
        assert _data(first) == ["big1", "s1", "big2"]
        # s1 still runs (its group keeps its turn, older than big's); t was never served
        await backend.add(queue.name, [_new("s", "s2"), _new("t", "t1")])
        done = [_done(first[0].id), _done(first[2].id)]
        result = await backend.finish(queue.name, "w", done, 3, 30)
        assert result.lost == []
        assert _data(result.jobs) == ["t1", "s2", "big3"]
        # with every group but big empty, the refill is big's jobs only
        done = [_done(j.id) for j in result.jobs] + [_done(first[1].id)]
        result = await backend.finish(queue.name, "w", done, 2, 30)
        assert _data(result.jobs) == ["big4", "big5"]
        await backend.add(queue.name, [_new("s", "s3")])
        result = await backend.finish(queue.name, "w", [_done(result.jobs[0].id)], 2, 30)
        assert _data(result.jobs) == ["s3", "big6"]

    async def test_jobs_without_a_group_take_turns_as_one_member(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        await backend.add(queue.name, [_new(None, f"u{i}") for i in range(1, 4)])
        await backend.add(queue.name, [_new("a", f"a{i}") for i in range(1, 4)])
        await backend.add(queue.name, [_new("b", "b1")])
        got = await backend.fetch(queue.name, "w", 7, 30, 0)
        assert _data(got) == ["u1", "a1", "b1", "u2", "a2", "u3", "a3"]

    async def test_priorities_order_each_group(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_GROUPS)
        await queue.add("j", "a-low", group="a", priority=5)
        await queue.add("j", "a-mid", group="a", priority=2)
        await queue.add("j", "b-first", group="b", priority=9)
        await queue.add("j", "a-top", group="a", priority=1)
        await queue.add("j", "a-top-lifo", group="a", priority=1, lifo=True)
        got = await backend.fetch(queue.name, "w", 5, 30, 0)
        assert _data(got) == ["a-top-lifo", "b-first", "a-top", "a-mid", "a-low"]
        job = await queue.get_job(got[0].id)
        assert job is not None and job.group == "a"

    async def test_grouped_jobs_are_counted_listed_removed_and_drained(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        plain = await queue.add("j", "u")
        first = await queue.add("j", "a1", group="a")
        await queue.add("j", "a2", group="a")
        await queue.add("j", "b1", group="b", delay=0.2)
        counts = await queue.counts()
        assert (counts["waiting"], counts["delayed"]) == (3, 1)
        listed = await queue.jobs("waiting")
        assert sorted(j.data for j in listed) == ["a1", "a2", "u"]
        assert {j.id: j.group for j in listed}[first.id] == "a"
        assert await queue.remove(first.id)
        assert (await queue.counts())["waiting"] == 2
        await asyncio.sleep(0.3)  # b1 falls due: promoted into its group
        got = await backend.fetch(queue.name, "w", 9, 30, 0)
        assert sorted(_data(got)) == ["a2", "b1", "u"]
        assert plain.id in [j.id for j in got]
        await queue.add_bulk([("j", f"x{i}", {"group": f"g{i % 3}"}) for i in range(6)])
        assert await queue.drain() == 6
        assert (await queue.counts())["waiting"] == 0
        assert await backend.fetch(queue.name, "w", 9, 30, 0) == []
        await queue.add("j", "again", group="g1")
        assert _data(await backend.fetch(queue.name, "w", 9, 30, 0)) == ["again"]

    async def test_a_queue_of_grouped_jobs_only_is_listed(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        await queue.hold_group("a", 60)  # a held group is out of the turns, not of the queue
        await queue.add("j", "a1", group="a")
        assert queue.name in await backend.queues()
        assert (await queue.counts())["waiting"] == 1

    async def test_every_way_back_to_waiting_keeps_the_group(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        await queue.hold_group("held", 60)
        later = await queue.add("j", "promoted", group="held", delay=60)
        assert await queue.promote(later.id)
        waiting = await queue.add("j", "waiting", group="held")
        await queue.hold_group("held", 0)  # an earlier end changes nothing: still held
        assert await backend.fetch(queue.name, "w", 9, 30, 0) == []
        assert (await queue.counts())["waiting"] == 2
        # a failed job retried comes back in its group
        await queue.add("j", "free", group="other")
        taken = await backend.fetch(queue.name, "w", 9, 30, 0)
        assert _data(taken) == ["free"]
        fin = Finish(taken[0].id, "failed", 1, time.time(), failed_reason="x")
        await backend.finish(queue.name, "w", [fin], 0, 30)
        assert await queue.retry(taken[0].id)
        assert _data(await backend.fetch(queue.name, "w", 9, 30, 0)) == ["free"]
        # leaving waiting otherwise: cancel, clean
        if CAP_CANCEL in backend.capabilities:
            assert await queue.cancel(waiting.id) == "failed"
            assert (await queue.counts())["waiting"] == 1
        left = (await queue.counts())["waiting"]
        assert left >= 1 and len(await queue.clean("waiting", 0)) == left
        assert (await queue.counts())["waiting"] == 0
        await queue.add("j", "after", group="held")
        assert await backend.fetch(queue.name, "w", 9, 30, 0) == []  # still held
        assert (await queue.counts())["waiting"] == 1

    async def test_group_concurrency_caps_every_group_across_workers(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        assert await queue.group_concurrency() is None
        await queue.set_group_concurrency(1)
        assert await queue.group_concurrency() == 1
        await backend.add(queue.name, [_new("a", f"a{i}") for i in range(1, 4)])
        await backend.add(queue.name, [_new("b", f"b{i}") for i in range(1, 3)])
        await backend.add(queue.name, [_new(None, "u1")])
        first = await backend.fetch(queue.name, "w1", 9, 30, 0)
        assert sorted(_data(first)) == ["a1", "b1", "u1"]
        async with self.other_connection(backend) as other:
            assert await other.fetch(queue.name, "w2", 9, 30, 0) == []
            a1 = next(j for j in first if j.data == "a1")
            done = await backend.finish(queue.name, "w1", [_done(a1.id)], 9, 30)
            assert _data(done.jobs) == ["a2"]
            # a blocked fetch of another worker wakes when a group's slot frees
            waiting = asyncio.create_task(other.fetch(queue.name, "w2", 9, 30, 8.0))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            b1 = next(j for j in first if j.data == "b1")
            started = time.monotonic()
            await backend.finish(queue.name, "w1", [_done(b1.id)], 0, 30)
            got = await asyncio.wait_for(waiting, WAIT)
            assert _data(got) == ["b2"] and time.monotonic() - started < 6
        await queue.set_group_concurrency(None)
        assert _data(await backend.fetch(queue.name, "w1", 9, 30, 0)) == ["a3"]

    async def test_a_stalled_or_released_job_gives_its_group_slot_back(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        await queue.set_group_concurrency(1)
        await backend.add(queue.name, [_new("a", f"a{i}") for i in range(1, 3)])
        held = await backend.fetch(queue.name, "dead", 9, 0.2, 0)
        assert _data(held) == ["a1"]
        assert await backend.fetch(queue.name, "w", 9, 30, 0) == []
        await asyncio.sleep(0.3)  # the lease of the dead worker runs out
        stalled = await backend.recover_stalled(queue.name, 5)
        assert [s.job_id for s in stalled] == [held[0].id]
        again = await backend.fetch(queue.name, "w", 9, 30, 0)
        assert len(again) == 1 and again[0].opts["group"] == "a"
        assert await backend.release(queue.name, "w", None) == [again[0].id]
        assert _data(await backend.fetch(queue.name, "w", 9, 30, 0)) == [again[0].data]

    async def test_a_held_group_waits_alone(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_GROUPS)
        held = time.monotonic()
        await queue.hold_group("a", 1.5)
        await backend.add(queue.name, [_new("a", "a1"), _new("b", "b1"), _new(None, "u1")])
        assert sorted(_data(await backend.fetch(queue.name, "w", 9, 30, 0))) == ["b1", "u1"]
        started = time.monotonic()
        got = await backend.fetch(queue.name, "w", 9, 30, 8.0)  # wakes when the hold ends
        assert _data(got) == ["a1"]
        # not before the hold ends (timed from the hold, however slow the calls in between)
        # and long before the fetch's own 8 s
        assert time.monotonic() - held >= 1.4
        assert time.monotonic() - started < 6

    async def test_group_rate_limit_counts_each_group(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_GROUPS)
        await queue.set_group_rate_limit("2/1s")
        assert await queue.group_rate_limit() == RateLimit(2, 1.0)
        await backend.add(queue.name, [_new("a", f"a{i}") for i in range(1, 5)])
        await backend.add(queue.name, [_new("b", "b1")])
        first = await backend.fetch(queue.name, "w", 9, 30, 0)
        assert sorted(_data(first)) == ["a1", "a2", "b1"]
        assert await backend.fetch(queue.name, "w", 9, 30, 0) == []
        started = time.monotonic()
        got = await backend.fetch(queue.name, "w", 9, 30, 5.0)
        assert _data(got) == ["a3", "a4"]
        assert 0.5 <= time.monotonic() - started < 4
        await queue.set_group_rate_limit(None)
        assert await queue.group_rate_limit() is None

    async def test_group_rate_limit_error_holds_only_that_group(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        started: dict[str, list[float]] = defaultdict(list)

        async def discord(job: Job) -> Any:
            started[job.data].append(time.monotonic())
            if job.data == "a1" and len(started["a1"]) == 1:
                raise GroupRateLimitError(0.8, "429 for webhook a")
            return job.data

        await queue.add("j", "a1", group="a")
        await queue.add("j", "a2", group="a")
        for i in range(1, 4):
            await queue.add("j", f"b{i}", group="b")
        await self.burst(queue, discord, concurrency=1)
        counts = await queue.counts()
        assert counts["completed"] == 5 and counts["failed"] == 0
        # the other group ran at once; the held one only once its hold was over
        # (counted from a1's failure, which set the 0.8 s hold: a held b would start after it)
        assert all(started[f"b{i}"][0] - started["a1"][0] < 0.7 for i in range(1, 4)), started
        assert started["a1"][1] - started["a1"][0] >= 0.7
        assert started["a2"][0] - started["a1"][0] >= 0.7
        a1 = await queue.jobs("completed")
        assert {j.data: j.attempts_made for j in a1}["a1"] == 1  # the hold is no attempt

    async def test_workers_together_keep_the_group_cap(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        await queue.set_group_concurrency(1)
        running: dict[str, int] = defaultdict(int)
        peak: dict[str, int] = defaultdict(int)

        async def slow(job: Job) -> Any:
            group = job.group or ""
            running[group] += 1
            peak[group] = max(peak[group], running[group])
            try:
                await asyncio.sleep(0.05)
            finally:
                running[group] -= 1
            return job.data

        await queue.add_bulk([("j", i, {"group": f"g{i % 3}"}) for i in range(9)])
        async with self.other_connection(backend) as other:
            one = self.make_worker(queue, slow, concurrency=4)
            two = self.make_worker(Queue(queue.name, other), slow, concurrency=4)
            await asyncio.wait_for(asyncio.gather(self.run_burst(one), self.run_burst(two)), 30)
        assert (await queue.counts())["completed"] == 9
        assert dict(peak) == {"g0": 1, "g1": 1, "g2": 1}

    async def test_a_flows_jobs_keep_their_groups(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_GROUPS)
        self.require(backend, CAP_FLOWS)
        child = {"name": "child", "queue": queue.name, "opts": {"group": "b"}}
        flow = {"name": "parent", "queue": queue.name, "opts": {"group": "a"}}
        await FlowProducer(backend).add({**flow, "children": [child]})
        await queue.hold_group("a", 30)
        taken = await backend.fetch(queue.name, "w", 9, 30, 0)
        assert [j.opts["group"] for j in taken] == ["b"]
        await backend.finish(queue.name, "w", [_done(taken[0].id)], 9, 30)
        # the parent is released into its own group, which is held
        assert (await queue.counts())["waiting"] == 1
        assert await backend.fetch(queue.name, "w", 9, 30, 0) == []
        await queue.add("j", "b-next", group="b")
        assert _data(await backend.fetch(queue.name, "w", 9, 30, 0)) == ["b-next"]

    async def test_a_replacing_add_moves_the_job_to_its_group(
        self, backend: Backend, queue: Queue
    ) -> None:
        self.require(backend, CAP_GROUPS)
        self.require(backend, CAP_DEDUP)
        window = {"id": "k", "replace": True}
        first = await queue.add("j", "old", group="a", deduplication=window)
        again = await queue.add("j", "new", group="b", deduplication=window)
        assert again.id == first.id
        await queue.hold_group("a", 30)
        taken = await backend.fetch(queue.name, "w", 9, 30, 0)
        assert [(j.data, j.opts["group"]) for j in taken] == [("new", "b")]

    async def test_group_settings_are_checked(self, backend: Backend, queue: Queue) -> None:
        self.require(backend, CAP_GROUPS)
        for bad in ("", "two words", "x" * 257, "bell\x07", 1.5):
            with pytest.raises(InvalidArgumentError, match="group"):
                await queue.add("j", 1, group=bad)
        for limit in (0, -1, 1.5, True):
            with pytest.raises(InvalidArgumentError, match="group concurrency"):
                await queue.set_group_concurrency(limit)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await queue.set_group_rate_limit("0/1s")
        with pytest.raises(InvalidArgumentError):
            await queue.hold_group("", 1)
        assert (await queue.counts())["waiting"] == 0
        assert await queue.group_concurrency() is None
        job = await queue.add("j", 1, group=7)
        assert job.group == "7"
