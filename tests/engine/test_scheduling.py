from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from polyjobs import InvalidArgumentError, ScheduleRecord
from polyjobs.scheduling import Cadence, due_slots, slot_job_id


def test_every_slots_are_aligned_to_the_epoch() -> None:
    c = Cadence(every=30)
    assert c.next_after(1000.0) == 1020.0
    assert c.next_after(1020.0) == 1050.0
    assert c.slots_between(1000.0, 1100.0, 100) == [1020.0, 1050.0, 1080.0]


def test_cron_in_a_timezone() -> None:
    c = Cadence(cron="0 9 * * *", tz="Europe/Berlin")
    start = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    nxt = datetime.fromtimestamp(c.next_after(start), ZoneInfo("Europe/Berlin"))
    assert (nxt.day, nxt.hour, nxt.minute) == (2, 9, 0)
    assert nxt.utcoffset() is not None and nxt.utcoffset().total_seconds() == 7200  # type: ignore[union-attr]


def test_six_field_cron_is_seconds_first_as_in_bullmq() -> None:
    start = datetime(2026, 1, 1, 0, 0, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    every_5s = Cadence(cron="*/5 * * * * *")
    first = every_5s.next_after(start)
    assert (first - start, every_5s.next_after(first) - first) == (5.0, 5.0)
    half_past = Cadence(cron="30 0 * * * *")  # second 30 of minute 0 of every hour
    assert half_past.next_after(start) - start == 30.0
    assert Cadence(cron="0 * * * *").next_after(start) - start == 3600.0  # five: minute first


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"cron": "* * * * * 99"},  # read as seconds first, 99 is no weekday
        {"cron": "* * * * * * *"},
        {"cron": "0 0 30 2 *"},  # never matches
        {"every": 1, "cron": "* * * * *"},
        {"cron": "61 * * * *"},
        {"every": 0.0001},
        {"cron": "* * * * *", "tz": "Mars/Olympus"},
        {"every": 5, "tz": "UTC"},
    ],
)
def test_bad_cadences(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        Cadence(**kwargs)  # type: ignore[arg-type]


def _record(next_run: float, missed: str, grace: float | None = None) -> ScheduleRecord:
    return ScheduleRecord("k", "k", "null", {}, next_run, every=10, missed=missed, grace=grace)


def test_skip_runs_the_slots_within_grace_and_drops_the_missed_ones() -> None:
    # every 10 s: grace is one period (10 s)
    assert due_slots(_record(100.0, "skip"), 103.0) == [100.0]
    assert due_slots(_record(100.0, "skip"), 155.0) == [150.0]
    assert due_slots(_record(100.0, "skip", grace=2), 153.0) == []
    assert due_slots(_record(100.0, "skip", grace=25), 155.0) == [130.0, 140.0, 150.0]


def test_short_periods_get_a_few_seconds_of_grace() -> None:
    """A 1 s schedule whose scheduler overslept 3 s runs the late slots, not just one."""
    record = ScheduleRecord("k", "k", "null", {}, 100.0, every=1, missed="skip")
    assert due_slots(record, 103.2) == [100.0, 101.0, 102.0, 103.0]
    assert due_slots(record, 110.0) == [105.0, 106.0, 107.0, 108.0, 109.0, 110.0]


def test_once_runs_the_latest_missed_slot() -> None:
    assert due_slots(_record(100.0, "once"), 157.0) == [150.0]
    assert due_slots(_record(100.0, "once"), 175.0) == [170.0]  # within grace: on time
    assert due_slots(_record(100.0, "once", grace=1), 157.0) == [150.0]


def test_all_runs_every_missed_slot() -> None:
    assert due_slots(_record(100.0, "all"), 157.0) == [100.0, 110.0, 120.0, 130.0, 140.0, 150.0]


def test_slot_job_ids_are_deterministic() -> None:
    assert slot_job_id("tick", 1020.0) == "sched:tick:1020000"
