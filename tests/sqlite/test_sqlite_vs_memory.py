"""The SQLite backend behaves like the in-memory reference: random operation sequences, run on
both, must give the same answers (ids, states, orders, counts), leaving out clock readings."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from polyjobs.backend import STATES, Backend, Finish, FinishStatus, JobRecord, NewJob, WorkerInfo
from polyjobs.backends.memory import MemoryBackend
from polyjobs.backends.sqlite import SqliteBackend
from polyjobs.options import Keep

Q = "diff"
TOKENS = ("w1", "w2")


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Backend, Backend]]:
    mem = MemoryBackend()
    lite = SqliteBackend(f"sqlite:///{tmp_path}/diff.db")
    await mem.open()
    await lite.open()
    try:
        yield mem, lite
    finally:
        await lite.close()
        await mem.close()


def _shape(record: JobRecord | None) -> tuple[Any, ...] | None:
    if record is None:
        return None
    return (
        record.id,
        record.name,
        record.data,
        record.state,
        record.priority,
        record.attempts_made,
        record.attempts_started,
        record.stalls,
        record.progress,
        record.returnvalue,
        record.failed_reason,
        record.worker,
    )


class Runner:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ids: list[str] = []
        self.clock = time.time()

    def tick(self) -> float:
        self.clock += 0.001
        return max(self.clock, time.time())

    def new_job(self) -> NewJob:
        r = self.rng
        job_id = r.choice([None, None, f"k{r.randrange(12)}"])
        run_at = r.choice([0.0, 0.0, 0.0, time.time() - 5, time.time() + 3600])
        return NewJob(
            name=r.choice(["a", "b"]),
            data_json=json.dumps({"n": r.randrange(100)}),
            opts={},
            timestamp=time.time() - 100,
            job_id=job_id,
            run_at=run_at,
            priority=r.choice([0, 0, 1, 3]),
            lifo=r.random() < 0.2,
        )

    def finish_for(self, owned: list[JobRecord]) -> list[Finish]:
        r = self.rng
        out = []
        for rec in r.sample(owned, min(len(owned), r.randrange(1, 4))):
            status: FinishStatus = r.choice(["completed", "failed", "retry"])
            keep = r.choice([Keep(), Keep(count=0), Keep(count=2), Keep(count=5)])
            retry_at = r.choice([0.0, time.time() + 3600])
            out.append(
                Finish(
                    job_id=rec.id,
                    status=status,
                    attempts_made=rec.attempts_made + 1,
                    finished_on=self.tick(),
                    returnvalue_json=json.dumps(rec.id) if status == "completed" else None,
                    failed_reason="boom" if status != "completed" else None,
                    retry_at=retry_at,
                    keep=keep,
                )
            )
        if r.random() < 0.2:
            out.append(Finish("nope", "completed", 1, self.tick()))
        return out


async def _both(pair: tuple[Backend, Backend], method: str, *args: Any) -> tuple[Any, Any]:
    mem, lite = pair
    return await getattr(mem, method)(*args), await getattr(lite, method)(*args)


async def _compare_state(pair: tuple[Backend, Backend]) -> None:
    a, b = await _both(pair, "counts", Q)
    assert a == b
    for state in STATES:
        la, lb = await _both(pair, "list_jobs", Q, state, 0, -1)
        assert [_shape(x) for x in la] == [_shape(x) for x in lb], state
    for state in ("waiting", "completed"):
        for start, end in ((1, 3), (-2, -1), (2, -2), (5, 2), (-100, 1), (0, 0)):
            pa, pb = await _both(pair, "list_jobs", Q, state, start, end)
            assert [x.id for x in pa] == [x.id for x in pb], (state, start, end)


async def _step(runner: Runner, pair: tuple[Backend, Backend], op: str) -> None:
    r = runner.rng
    mem = pair[0]
    if op == "add":
        batch = [runner.new_job() for _ in range(r.randrange(1, 5))]
        a, b = await _both(pair, "add", Q, batch)
        assert a == b
    elif op == "fetch":
        token, lease = r.choice(TOKENS), r.choice([30.0, 30.0, -1.0])
        a, b = await _both(pair, "fetch", Q, token, r.randrange(1, 4), lease, 0)
        assert [_shape(x) for x in a] == [_shape(x) for x in b]
    elif op == "finish":
        token = r.choice(TOKENS)
        owned = [j for j in await mem.list_jobs(Q, "active", 0, -1) if j.worker == token]
        if owned or r.random() < 0.3:
            fins = runner.finish_for(owned)
            fetch = r.randrange(0, 3)
            a, b = await _both(pair, "finish", Q, token, fins, fetch, 30.0)
            assert a.lost == b.lost
            assert [_shape(x) for x in a.jobs] == [_shape(x) for x in b.jobs]
    elif op == "release":
        token = r.choice(TOKENS)
        ids = None if r.random() < 0.5 else [j.id for j in await mem.list_jobs(Q, "active", 0, 3)]
        a, b = await _both(pair, "release", Q, token, ids)
        assert a == b
    elif op == "stalled":
        a, b = await _both(pair, "recover_stalled", Q, r.choice([0, 1]))
        assert a == b
    else:
        await _admin_step(runner, pair, op)


async def _admin_step(runner: Runner, pair: tuple[Backend, Backend], op: str) -> None:
    r = runner.rng
    job_id = r.choice(["1", "2", "3", "5", "8", "k1", "k3", "missing"])
    if op in ("promote", "retry", "remove", "get_job"):
        a, b = await _both(pair, op, Q, job_id)
        assert _shape(a) == _shape(b) if op == "get_job" else a == b
    elif op == "extend":
        a, b = await _both(pair, "extend", Q, r.choice(TOKENS), ["1", "2", "k1"], 30.0)
        assert a == b
    elif op == "progress":
        a, b = await _both(pair, "update_progress", Q, job_id, json.dumps({"p": 1}))
        assert a == b
    elif op == "log":
        a, b = await _both(pair, "add_log", Q, job_id, f"line {r.random()}", 3)
        assert a == b
        a, b = await _both(pair, "get_logs", Q, job_id, -2, -1)
        assert a == b
    elif op == "pause":
        await _both(pair, r.choice(["pause", "resume", "resume"]), Q)
    elif op == "drain":
        a, b = await _both(pair, "drain", Q, r.random() < 0.5)
        assert a == b
    elif op == "clean":
        state = r.choice(["waiting", "delayed", "completed", "failed", "active"])
        a, b = await _both(pair, "clean", Q, state, 0.0, r.choice([0, 1, 2]))
        assert a == b


OPS = (
    ["add"] * 8
    + ["fetch"] * 6
    + ["finish"] * 6
    + ["release", "stalled", "promote", "retry", "remove", "get_job", "extend"]
    + ["progress", "log", "log", "pause", "drain", "clean", "clean"]
)


@pytest.mark.parametrize("seed", range(12))
async def test_random_operations_match_memory(pair: tuple[Backend, Backend], seed: int) -> None:
    runner = Runner(random.Random(seed))
    for _ in range(120):
        await _step(runner, pair, runner.rng.choice(OPS))
        await _compare_state(pair)
    a, b = await _both(pair, "queues")
    assert a == b


async def test_schedules_and_workers_match_memory(pair: tuple[Backend, Backend]) -> None:
    from polyjobs.backend import ScheduleRecord

    s = ScheduleRecord("k", "tick", "{}", {}, next_run=100.0, every=5.0, created=1.0)
    a, b = await _both(pair, "save_schedule", Q, s)
    assert a == b
    moved = ScheduleRecord("k", "tick", '{"x": 1}', {}, next_run=200.0, every=5.0, created=1.0)
    a, b = await _both(pair, "save_schedule", Q, moved)
    assert a == b and a.next_run == 100.0 and a.data_json == '{"x": 1}'
    job = NewJob("tick", "{}", {}, time.time(), job_id="sched:k:100000", run_at=0.0)
    a, b = await _both(pair, "advance_schedule", Q, "k", 100.0, 105.0, [job])
    assert a is b is True
    a, b = await _both(pair, "advance_schedule", Q, "k", 100.0, 110.0, [job])
    assert a is b is False
    a, b = await _both(pair, "get_schedules", Q)
    assert a == b
    await _compare_state(pair)
    info = WorkerInfo("w", Q, "host", 1, 2, 3.0)
    await _both(pair, "heartbeat", info, 30.0)
    a, b = await _both(pair, "list_workers", Q)
    assert [(w.id, w.host, w.pid) for w in a] == [(w.id, w.host, w.pid) for w in b]
    await _both(pair, "unregister", Q, "w")
    a, b = await _both(pair, "list_workers", Q)
    assert a == b == []
    a, b = await _both(pair, "remove_schedule", Q, "k")
    assert a is b is True
    await _both(pair, "obliterate", Q)
    a, b = await _both(pair, "queues")
    assert a == b == []
