"""The add script's two forms of a job in one call: plain jobs (no delay, priority 0, FIFO, no
group or deduplication window) go as five fields, the others with all of theirs; a call that
mixes them stores each as given, in order."""

from __future__ import annotations

import time

from polyjobs import Queue
from polyjobs.backend import NewJob
from polyjobs.backends.redis import RedisBackend


async def test_plain_and_full_jobs_in_one_call_are_stored_as_given(
    backend: RedisBackend,
) -> None:
    queue = Queue("q", backend)
    before = time.time()
    jobs = await queue.add_bulk(
        [
            ("plain", {"n": 1}),
            ("with-id", {"n": 2}, {"job_id": "mine"}),
            ("prio", {"n": 3}, {"priority": 2}),
            ("lifo", {"n": 4}, {"lifo": True}),
            ("late", {"n": 5}, {"delay": 60}),
            ("grouped", {"n": 6}, {"group": "g1"}),
            ("windowed", {"n": 7}, {"deduplication": {"id": "w"}}),
            ("absorbed", {"n": 8}, {"deduplication": {"id": "w"}}),
            ("again", {"n": 9}, {"job_id": "mine"}),
            ("plain-2", {"n": 10}, {"attempts": 3}),
        ]
    )
    ids = [j.id for j in jobs]
    assert ids[1] == ids[8] == "mine" and ids[6] == ids[7] and len(set(ids)) == 8
    stored_as = [("plain", 1), ("with-id", 2), ("prio", 3), ("lifo", 4), ("late", 5)]
    stored_as += [("grouped", 6), ("windowed", 7), ("windowed", 7), ("with-id", 2), ("plain-2", 10)]
    for job, (name, n) in zip(jobs, stored_as, strict=True):
        stored = await queue.get_job(job.id)
        assert stored is not None
        assert (stored.name, stored.data) == (name, {"n": n})
        assert (job.name, job.data) == (stored.name, stored.data)
        assert job.timestamp == stored.timestamp and before <= stored.timestamp <= time.time()
        assert job.run_at == stored.run_at and job.priority == stored.priority
        assert job.state == stored.state
    assert [j.state for j in jobs[:5]] == ["waiting"] * 4 + ["delayed"]
    assert jobs[4].run_at == jobs[4].timestamp + 60
    assert jobs[2].priority == 2 and jobs[9].priority == 0
    assert jobs[5].group == "g1" and jobs[9].options.attempts == 3
    assert await queue.deduplication_job_id("w") == ids[6]
    # taken in order: the LIFO job first among priority 0, the priority 2 job last
    taken = [r.id for r in await backend.fetch("q", "w", 10, 30.0, 0.0)]
    assert taken[0] == ids[3] and taken[-1] == ids[2]
    assert sorted(taken) == sorted({ids[0], ids[1], ids[2], ids[3], ids[5], ids[6], ids[9]})


async def test_jobs_of_one_call_alternating_options_and_times_keep_their_own(
    backend: RedisBackend,
) -> None:
    """A call's options and timestamps are encoded once per object in a row: jobs that switch
    between objects (and back) are each stored with their own."""
    a, b = {"attempts": 2}, {"attempts": 3}
    t1 = time.time()
    t2 = t1 + 0.25
    jobs = [
        NewJob("j", "1", a, t1, run_at=t1),
        NewJob("j", "2", b, t1, run_at=t1),
        NewJob("j", "3", a, t2, run_at=t2),
        NewJob("j", "4", a, t2, run_at=t2 + 60),  # (delayed: all fields)
        NewJob("j", "5", b, t1, run_at=t1),
    ]
    results = await backend.add("q", jobs)
    stored = [await backend.get_job("q", r.id) for r in results]
    assert [(r.data, r.opts["attempts"], r.timestamp) for r in stored if r is not None] == [
        (1, 2, t1),
        (2, 3, t1),
        (3, 2, t2),
        (4, 2, t2),
        (5, 3, t1),
    ]
    assert [r.state for r in stored if r is not None] == ["waiting"] * 3 + ["delayed", "waiting"]
