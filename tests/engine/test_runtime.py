"""Runtime: resources, context, follow-up queues, schedules, stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from polyjobs import (
    Backoff,
    InvalidArgumentError,
    Job,
    Queue,
    QueueSpec,
    Runtime,
    RuntimeContext,
    ScheduleSpec,
    open_backend,
)


async def test_resources_settings_and_follow_up_queues() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def store(ctx: RuntimeContext) -> AsyncIterator[dict[str, Any]]:
        events.append(f"open {ctx.settings['NAME']}")
        yield {"rows": []}
        events.append("close")

    async def first(job: Job) -> str:
        job.context["store"]["rows"].append(job.data)
        await job.context.queue(FOLLOW.name).add("next", {"from": job.id})
        return "ok"

    async def never(job: Job) -> None:
        raise AssertionError("the follow-up queue is not run by this runtime")

    FIRST = QueueSpec("first", first)
    FOLLOW = QueueSpec("follow", never, attempts=4, backoff=Backoff("fixed", 3.0))
    async with open_backend("memory://") as backend:
        runtime = Runtime(
            [FIRST],
            backend,
            resources={"store": store},
            settings={"NAME": "test"},
            known_specs={FOLLOW.name: FOLLOW},
        )
        await runtime.queue("first").add("a", {"x": 1})
        await runtime.start(burst=True)
        await asyncio.wait_for(runtime.wait(), 10)
        assert events == ["open test"]
        await runtime.stop(1)
        assert events == ["open test", "close"]
        follow = await runtime.context.queue("follow").jobs("waiting")
        assert len(follow) == 1 and follow[0].data == {"from": "1"}
        assert follow[0].options.attempts == 4 and follow[0].options.backoff.delay == 3.0


async def test_schedules_are_upserted_and_fire() -> None:
    ran: list[str] = []

    async def tick(job: Job) -> None:
        ran.append(job.id)

    spec = QueueSpec("ticks", tick, schedule=ScheduleSpec("t", every=0.2, name="tick"))
    async with open_backend("memory://") as backend:
        runtime = Runtime([spec], backend)
        await runtime.start()
        await asyncio.sleep(0.75)
        await runtime.stop(1)
        schedules = await runtime.queue("ticks").schedules()
    assert [s.key for s in schedules] == ["t"]
    assert 2 <= len(ran) <= 5 and all(job_id.startswith("sched:t:") for job_id in ran)
    assert len(set(ran)) == len(ran)


def test_a_queue_given_twice_is_refused() -> None:
    async def noop(job: Job) -> None:
        return None

    with pytest.raises(InvalidArgumentError, match="given twice"):
        Runtime([QueueSpec("q", noop), QueueSpec("q", noop)], backend=None)  # type: ignore[arg-type]


async def test_burst_runs_a_chain_of_queues_to_its_end() -> None:
    """Each queue enqueues into the next (one with a delay): burst stops only when all are
    idle together, not when the first queue runs dry."""

    async def first(job: Job) -> None:
        await job.context.queue("second").add("b", {}, delay=0.3)

    async def second(job: Job) -> None:
        await asyncio.sleep(0.1)
        await job.context.queue("third").add("c", {})

    async def third(job: Job) -> str:
        return "end"

    specs = [QueueSpec("first", first), QueueSpec("second", second), QueueSpec("third", third)]
    async with open_backend("memory://") as backend:
        runtime = Runtime(specs, backend)
        await runtime.queue("first").add("a", {})
        await asyncio.wait_for(runtime.run(burst=True, grace=1), 10)
        done = await runtime.queue("third").jobs("completed")
        assert [j.returnvalue for j in done] == ["end"]
        for name in ("first", "second", "third"):
            counts = await runtime.queue(name).counts()
            assert (counts["waiting"], counts["active"], counts["delayed"]) == (0, 0, 0)


@pytest.mark.parametrize("plain", [False, True])
async def test_data_the_specs_validate_refuses_fails_the_job_without_running_it(
    plain: bool,
) -> None:
    """A job added past the check (a plain Queue, another producer) is refused by the Runtime
    with the check's message, once: no retry could make it valid."""
    ran: list[Any] = []

    def need_n(data: Any) -> None:
        if not isinstance(data, dict) or "n" not in data:
            raise InvalidArgumentError("this queue's jobs need an n")

    async def async_processor(job: Job) -> int:
        ran.append(job.data)
        return int(job.data["n"])

    def plain_processor(job: Job) -> int:
        ran.append(job.data)
        return int(job.data["n"])

    processor = plain_processor if plain else async_processor
    spec = QueueSpec("checked", processor, attempts=3, validate=need_n)
    async with open_backend("memory://") as backend:
        bad = await Queue("checked", backend).add("bad", {"m": 1})  # no validate here
        good = await Queue("checked", backend).add("good", {"n": 2})
        await Runtime([spec], backend, schedule=False).run(burst=True)
        bad_after = await Queue("checked", backend).require_job(bad.id)
        good_after = await Queue("checked", backend).require_job(good.id)
    assert (bad_after.state, bad_after.attempts_made) == ("failed", 1)
    assert bad_after.failed_reason == "this queue's jobs need an n"
    assert good_after.returnvalue == 2 and ran == [{"n": 2}]
