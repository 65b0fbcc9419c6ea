"""Contract: repeatable jobs: one job per slot whatever the number of schedulers, removal,
timezones and the missed-run policy."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from polyjobs.backend import CAP_SHARED, Backend, NewJob, ScheduleRecord
from polyjobs.job import Job
from polyjobs.queue import Queue
from polyjobs.scheduling import slot_job_id
from polyjobs.testing.support import ContractBase, LoopStalls, Recorder, wait_until

HOUR = 3600.0


class SchedulesContract(ContractBase):
    async def _three_schedulers(self, queue: Queue, runs: Recorder, count: int) -> None:
        """Run three workers (each with its scheduler; on separate connections when the
        backend is ``shared``) until ``count`` runs. Each job must be made at or after its
        slot (never early) and soon after it."""
        payloads: set[tuple[str, str]] = set()
        lateness: list[float] = []

        async def proc(job: Job) -> None:
            payloads.add((job.name, json.dumps(job.data)))
            slot = int(job.id.rsplit(":", 1)[1]) / 1000
            assert job.id == slot_job_id(job.id.split(":")[1], slot)
            lateness.append(job.timestamp - slot)
            runs.add(job.id)

        stalls = LoopStalls()
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(stalls.watching())
            for i in range(3):
                backend = queue.backend
                if i and CAP_SHARED in backend.capabilities:
                    backend = await stack.enter_async_context(self.open_other())
                worker = self.make_worker(
                    Queue(queue.name, backend), proc, schedule_refresh=0.05, block=0.1
                )
                await stack.enter_async_context(self.running(worker))
            await runs.wait_for(count)
        assert payloads == {("tick", '{"k": 1}')}, "scheduled jobs lost their name or data"
        assert min(lateness) >= 0, f"a slot's job was made before the slot: {lateness}"
        # "Soon" is within a second, plus any time the machine did not run this process at all.
        late = 1.0 + stalls.longest
        assert max(lateness) < late, f"a slot's job was made far too late: {lateness} (> {late})"

    async def test_every_gives_one_job_per_slot_with_three_schedulers(self, queue: Queue) -> None:
        period = 0.2
        # Slots are counted from before the upsert: the first falls after it, and the upsert
        # itself can take a good part of a period on a loaded machine.
        started = time.monotonic()
        before = time.time()
        record = await queue.upsert_schedule(
            "tick", every=period, data={"k": 1}, options={"remove_on_complete": True}
        )
        assert record.every == period and record.next_run > before  # the next slot
        runs = Recorder()
        await self._three_schedulers(queue, runs, 5)
        elapsed = time.monotonic() - started
        per_slot = Counter(runs.items)
        assert max(per_slot.values()) == 1, f"a slot ran more than once: {per_slot}"
        assert len(runs) <= elapsed / period + 2, "more jobs than slots"
        assert (await queue.counts())["completed"] == 0  # remove_on_complete=True held

    async def test_cron_with_seconds_and_tz_one_job_per_slot(self, queue: Queue) -> None:
        started = time.monotonic()
        await queue.upsert_schedule(
            "sec",
            name="tick",
            data={"k": 1},
            cron="*/1 * * * * *",  # six fields: seconds first, as in BullMQ
            tz="America/New_York",
            options={"remove_on_complete": True},
        )
        runs = Recorder()
        await self._three_schedulers(queue, runs, 2)
        elapsed = time.monotonic() - started
        per_slot = Counter(runs.items)
        assert max(per_slot.values()) == 1, f"a slot ran more than once: {per_slot}"
        assert len(runs) <= elapsed + 2

    async def test_cron_timezone_is_honoured(self, queue: Queue) -> None:
        for key, tz in (("ny", "America/New_York"), ("in", "Asia/Kolkata")):
            record = await queue.upsert_schedule(key, cron="30 9 * * *", tz=tz)
            local = datetime.fromtimestamp(record.next_run, ZoneInfo(tz))
            assert (local.hour, local.minute, local.second) == (9, 30, 0)
            assert time.time() < record.next_run <= time.time() + 25 * HOUR
        stored = {s.key: s for s in await queue.schedules()}
        assert stored["ny"].tz == "America/New_York" and stored["ny"].cron == "30 9 * * *"
        utc = datetime.fromtimestamp(stored["in"].next_run, ZoneInfo("UTC"))
        assert (utc.hour, utc.minute) == (4, 0)

    async def test_upsert_keeps_the_next_slot_of_the_same_cadence(
        self, queue: Queue, backend: Backend
    ) -> None:
        first = await queue.upsert_schedule("k", every=60, data=1)
        again = await Queue(queue.name, backend).upsert_schedule("k", every=60, data=2)
        assert again.next_run == first.next_run
        stored = await queue.schedules()
        assert len(stored) == 1 and stored[0].data_json == "2"
        changed = await queue.upsert_schedule("k", cron="0 0 1 1 *")
        assert changed.next_run != first.next_run and changed.cron == "0 0 1 1 *"
        assert [(s.key, s.every, s.cron) for s in await queue.schedules()] == [
            ("k", None, "0 0 1 1 *")
        ]

    async def test_save_schedule_keeps_next_run_of_the_same_cadence(
        self, queue: Queue, backend: Backend
    ) -> None:
        soon = time.time() + 100
        record = ScheduleRecord("k", "k", "1", {}, next_run=soon, every=10.0)
        assert (await backend.save_schedule(queue.name, record)).next_run == soon
        moved = replace(record, next_run=soon + 50, data_json="2")
        stored = await backend.save_schedule(queue.name, moved)
        assert (stored.next_run, stored.data_json) == (soon, "2")
        assert [(s.next_run, s.data_json) for s in await queue.schedules()] == [(soon, "2")]
        other = replace(record, next_run=soon + 50, every=20.0)
        assert (await backend.save_schedule(queue.name, other)).next_run == soon + 50
        assert [s.next_run for s in await queue.schedules()] == [soon + 50]

    async def test_remove_schedule_stops_it(self, queue: Queue) -> None:
        await queue.upsert_schedule("fast", every=0.1)
        runs = Recorder()

        async def proc(job: Job) -> None:
            runs.add(job.id)

        worker = self.make_worker(queue, proc, schedule_refresh=0.05, block=0.1)
        async with self.running(worker):
            await runs.wait_for(2)
            assert await queue.remove_schedule("fast") is True

            async def idle() -> bool:
                counts = await queue.counts()
                return int(counts["waiting"]) + int(counts["active"]) == 0

            await wait_until(idle, what="queue idle")
            seen = len(runs)
            await asyncio.sleep(0.5)  # five periods: a live schedule would have fired
            assert len(runs) == seen
        assert await queue.schedules() == []
        assert await queue.remove_schedule("fast") is False

    async def test_advance_schedule_is_a_compare_and_set(
        self, queue: Queue, backend: Backend
    ) -> None:
        now = time.time()
        record = ScheduleRecord("cas", "cas", "null", {}, next_run=now - 1, every=1.0)
        await backend.save_schedule(queue.name, record)
        jobs = [NewJob("cas", "null", {}, now, job_id="cas-slot")]
        results = await asyncio.gather(
            *(backend.advance_schedule(queue.name, "cas", now - 1, now + 1, jobs) for _ in range(5))
        )
        assert sorted(results) == [False] * 4 + [True]
        assert (await queue.counts())["waiting"] == 1
        assert (await queue.schedules())[0].next_run == now + 1
        late = await backend.advance_schedule(queue.name, "cas", now - 1, now + 2, jobs)
        assert late is False
        missing = await backend.advance_schedule(queue.name, "nope", now - 1, now + 2, jobs)
        assert missing is False

    # -- missed runs -----------------------------------------------------------------------
    async def _after_downtime(self, queue: Queue, missed: str | None) -> tuple[set[str], float]:
        """A schedule (hourly, 30 minutes past its last slot) whose ``next_run`` is four
        slots in the past, as if no scheduler had run for hours; let a worker's scheduler
        see it (the queue paused so the jobs stay put) and return the ids of the jobs it
        added and the latest slot."""
        now = time.time()
        minute = (datetime.fromtimestamp(now, ZoneInfo("UTC")).minute - 30) % 60
        cron = f"{minute} * * * *"
        kwargs: dict[str, Any] = {} if missed is None else {"missed": missed}
        made = await queue.upsert_schedule("hourly", cron=cron, **kwargs)
        assert made.missed == (missed or "skip")
        latest = made.next_run - HOUR
        assert 29 * 60 <= now - latest <= 31 * 60 + 5
        await queue.remove_schedule("hourly")
        await queue.backend.save_schedule(queue.name, replace(made, next_run=latest - 3 * HOUR))
        await queue.pause()
        worker = self.make_worker(queue, lambda j: None, schedule_refresh=0.05)
        async with self.running(worker):

            async def advanced() -> bool:
                schedules = await queue.schedules()
                return bool(schedules) and schedules[0].next_run > time.time()

            await wait_until(advanced, what="schedule advanced past now")
        stored = await queue.schedules()
        assert stored[0].next_run == made.next_run
        return {j.id for j in await queue.jobs("waiting")}, latest

    async def test_missed_runs_are_skipped_by_default(self, queue: Queue) -> None:
        added, _ = await self._after_downtime(queue, None)
        assert added == set()

    @pytest.mark.parametrize("policy", ["skip", "once", "all"])
    async def test_missed_run_policy(self, queue: Queue, policy: str) -> None:
        added, latest = await self._after_downtime(queue, policy)
        if policy == "skip":
            assert added == set()
        elif policy == "once":
            assert added == {slot_job_id("hourly", latest)}
        else:
            assert added == {slot_job_id("hourly", latest - k * HOUR) for k in range(4)}
