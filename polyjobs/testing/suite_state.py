"""Contract: retention of finished jobs, progress and logs, exact counts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from polyjobs.backend import Backend
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.testing.support import ContractBase, Recorder


async def _ok(job: Job) -> Any:
    return job.data


async def _fail(job: Job) -> None:
    raise ValueError(f"failing {job.data}")


class StateContract(ContractBase):
    async def _run(self, queue: Queue, count: int, start: int = 0, **options: Any) -> list[str]:
        ids = [(await queue.add("r", start + i, **options)).id for i in range(count)]
        await self.burst(queue, _ok, concurrency=1)
        return ids

    async def _present(self, queue: Queue, ids: list[str]) -> list[str]:
        return [i for i in ids if await queue.get_job(i) is not None]

    async def test_remove_on_complete_keeps_the_last_n(self, queue: Queue) -> None:
        ids = await self._run(queue, 12, remove_on_complete=5)
        assert (await queue.counts())["completed"] == 5
        assert await self._present(queue, ids) == ids[-5:]
        assert [j.id for j in await queue.jobs("completed")] == list(reversed(ids[-5:]))

    async def test_remove_on_complete_true_removes_at_once(self, queue: Queue) -> None:
        ids = await self._run(queue, 3, remove_on_complete=True)
        assert (await queue.counts())["completed"] == 0
        assert await self._present(queue, ids) == []

    async def test_remove_on_complete_false_keeps_all(self, queue: Queue) -> None:
        ids = await self._run(queue, 110, remove_on_complete=False)
        assert (await queue.counts())["completed"] == 110
        assert len(await self._present(queue, ids)) == 110

    async def test_default_retention_is_bounded(self, queue: Queue) -> None:
        await self._run(queue, 105)
        assert (await queue.counts())["completed"] == 100

    async def test_remove_on_complete_by_age(self, queue: Queue) -> None:
        old = await self._run(queue, 3, remove_on_complete=timedelta(seconds=0.3))
        assert await self._present(queue, old) == old
        await asyncio.sleep(0.45)
        new = await self._run(queue, 1, start=3, remove_on_complete=timedelta(seconds=0.3))
        assert await self._present(queue, old + new) == new
        assert (await queue.counts())["completed"] == 1

    async def test_remove_on_complete_by_count_and_age(self, queue: Queue) -> None:
        keep = {"count": 3, "age": 0.3}
        first = await self._run(queue, 5, remove_on_complete=keep)
        assert await self._present(queue, first) == first[-3:]
        await asyncio.sleep(0.45)
        second = await self._run(queue, 2, start=5, remove_on_complete=keep)
        assert await self._present(queue, first + second) == second

    async def test_remove_on_fail(self, queue: Queue) -> None:
        ids = [(await queue.add("f", i, remove_on_fail=2)).id for i in range(4)]
        gone = (await queue.add("f", 9, remove_on_fail=True)).id
        await self.burst(queue, _fail, concurrency=1)
        assert (await queue.counts())["failed"] == 2
        assert await self._present(queue, [*ids, gone]) == ids[-2:]

    async def test_progress_and_logs_are_stored(self, queue: Queue) -> None:
        seen = Recorder()

        async def proc(job: Job) -> None:
            await job.update_progress(10)
            await job.log("step one")
            await job.update_progress({"done": 3, "of": 4})
            for i in range(5):
                await job.log(f"line {i}")
            seen.add(job.progress)

        job = await queue.add("p", None)
        worker = self.make_worker(queue, proc)
        progress = Recorder()
        worker.on("progress", progress.callback)
        await self.run_burst(worker)
        stored = await queue.require_job(job.id)
        assert stored.progress == {"done": 3, "of": 4}
        assert seen.items == [{"done": 3, "of": 4}]
        assert [p for _, p in progress.items] == [10, {"done": 3, "of": 4}]
        lines = ["step one"] + [f"line {i}" for i in range(5)]
        assert await queue.logs(job.id) == lines
        assert await stored.logs() == lines
        assert await queue.logs(job.id, 0, 1) == lines[:2]
        assert await queue.logs(job.id, -2, -1) == lines[-2:]
        assert await queue.logs(job.id, 4) == lines[4:]

    async def test_progress_and_logs_of_missing_job(self, queue: Queue, backend: Backend) -> None:
        assert await backend.update_progress(queue.name, "missing", "5") is False
        assert await backend.add_log(queue.name, "missing", "x", 10) == 0
        assert await queue.logs("missing") == []

    async def test_logs_keep_the_last_lines(self, queue: Queue, backend: Backend) -> None:
        job = await queue.add("l", None)
        for i in range(5):
            kept = await backend.add_log(queue.name, job.id, f"l{i}", 3)
        assert kept == 3
        assert await queue.logs(job.id) == ["l2", "l3", "l4"]

    async def test_counts_are_exact_in_every_state(self, queue: Queue, backend: Backend) -> None:
        assert await queue.counts() == {
            "waiting": 0,
            "active": 0,
            "delayed": 0,
            "waiting-children": 0,
            "completed": 0,
            "failed": 0,
            "paused": False,
        }
        for i in range(3):
            await queue.add("ok", i)
        for i in range(2):
            await queue.add("bad", i)

        async def proc(job: Job) -> None:
            if job.name == "bad":
                raise ValueError("bad")

        await self.burst(queue, proc)
        await queue.add("active", None)
        assert len(await backend.fetch(queue.name, "tok", 1, 30.0, 0)) == 1
        await queue.add_bulk([("w", 1), ("w", 2), ("w", 3, {"priority": 4})])
        await queue.add("d", None, delay=60)
        await queue.add("d", None, delay=61)
        expected = {
            "waiting": 3,
            "active": 1,
            "delayed": 2,
            "waiting-children": 0,
            "completed": 3,
            "failed": 2,
        }
        assert await queue.counts() == {**expected, "paused": False}
        for state, n in expected.items():
            listed = await queue.jobs(state)
            assert len(listed) == n, state
            assert all(j.state == state for j in listed)
        await queue.pause()
        assert await queue.counts() == {**expected, "paused": True}
