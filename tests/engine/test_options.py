from __future__ import annotations

import random
from datetime import timedelta

import pytest

from polyjobs import Backoff, InvalidArgumentError, JobOptions, Keep
from polyjobs.options import check_job_id, seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, 1.5),
        (timedelta(minutes=2), 120.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("2", 2.0),
    ],
)
def test_durations(value: object, expected: float) -> None:
    assert seconds(value) == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["soon", "-1s", -1, float("nan"), float("inf"), True, [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(InvalidArgumentError):
        seconds(value)  # type: ignore[arg-type]


def test_exponential_backoff_doubles_and_caps() -> None:
    b = Backoff.parse({"type": "exponential", "delay": 2, "max_delay": 10})
    assert [b.delay_for(n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


def test_jitter_only_shortens_within_its_fraction() -> None:
    b = Backoff("fixed", 10.0, jitter=0.5)
    rng = random.Random(7)
    delays = [b.delay_for(1, rng) for _ in range(200)]
    assert all(5.0 <= d <= 10.0 for d in delays)
    assert len(set(delays)) > 100


@pytest.mark.parametrize(
    "bad", [{"type": "linear"}, "linear", {"type": "fixed", "jitter": 2}, {"delay": 1, "x": 1}]
)
def test_bad_backoff(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        Backoff.parse(bad)


def test_retention_forms() -> None:
    default = Keep(count=100)
    assert Keep.parse(None, default) == default
    assert Keep.parse(True, default).removes_at_once
    assert Keep.parse(False, default) == Keep()
    assert Keep.parse(5, default) == Keep(count=5)
    assert Keep.parse(timedelta(hours=1), default) == Keep(age=3600.0)
    assert Keep.parse({"count": 3, "age": "1m"}, default) == Keep(3, 60.0)
    with pytest.raises(InvalidArgumentError):
        Keep.parse(-1, default)


def test_defaults_are_bounded() -> None:
    opts = JobOptions()
    assert opts.remove_on_complete.count == 100
    assert opts.remove_on_fail.count == 1000


def test_options_round_trip_through_json() -> None:
    opts = JobOptions.parse(
        {
            "job_id": "a:1",
            "delay": "2s",
            "priority": 3,
            "attempts": 4,
            "backoff": {"type": "exponential", "delay": 0.5, "jitter": 0.1},
            "timeout": 5,
            "remove_on_complete": 10,
            "remove_on_fail": timedelta(days=1),
        }
    )
    assert JobOptions.from_json(opts.to_json()) == opts


@pytest.mark.parametrize(
    "bad",
    [
        {"attempts": 0},
        {"attempts": "3"},
        {"priority": -1},
        {"priority": 2**22},
        {"timeout": 0},
        {"colour": "red"},
        {"job_id": "has space"},
        {"job_id": ""},
        {"job_id": "x" * 300},
    ],
)
def test_bad_options(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        JobOptions.parse(bad)


def test_job_ids_accept_odd_but_printable_characters() -> None:
    assert check_job_id("repeat:abc/é{x}") == "repeat:abc/é{x}"
    assert check_job_id(42) == "42"
    with pytest.raises(InvalidArgumentError):
        check_job_id("tab\there")


def test_rate_limit_parsing() -> None:
    from polyjobs import RateLimit

    assert RateLimit.parse("5/2s") == RateLimit(5, 2.0)
    assert RateLimit.parse("30/1m") == RateLimit(30, 60.0)
    assert RateLimit.parse({"max": 10, "duration": "500ms"}) == RateLimit(10, 0.5)
    assert str(RateLimit(5, 2.0)) == "5/2s"
    for bad in ("5", "x/2s", "0/1s", "5/0s", {"max": "5", "duration": 1}):
        with pytest.raises(InvalidArgumentError):
            RateLimit.parse(bad)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 99999999999999999999}, "delay must be at most 10 years (315360000 s)"),
        ({"delay": "99999999999999999999"}, "delay must be at most 10 years"),
        ({"delay": 10**400}, "delay must be a finite number"),
        ({"delay": timedelta(days=3651)}, "delay must be at most 10 years"),
        ({"attempts": 1_000_001}, "attempts must be within 1..1000000"),
        ({"priority": 2**21 + 1}, "priority must be within 0..2097152"),
        ({"priority": 10**30}, "priority must be within 0..2097152"),
        ({"timeout": "366d"}, "timeout must be at most 1 year (31536000 s)"),
        ({"backoff": 1e12}, "backoff delay must be at most 10 years"),
        ({"backoff": {"type": "exponential", "delay": 1, "max_delay": 1e12}}, "max_delay"),
    ],
)
def test_options_beyond_their_bounds_are_refused_in_one_line(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        JobOptions.parse(options)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert len(str(refused.value)) < 120


def test_options_at_their_bounds_are_accepted() -> None:
    opts = JobOptions.parse(
        {"delay": "3650d", "attempts": 1_000_000, "priority": 2**21, "timeout": "365d"}
    )
    assert (opts.delay, opts.attempts, opts.timeout) == (315_360_000.0, 1_000_000, 31_536_000.0)


def test_stored_options_beyond_the_bounds_are_read_back_clamped() -> None:
    stored = {
        "delay": 1e20,
        "attempts": 10**12,
        "timeout": 1e30,
        "priority": 2**40,
        "backoff": {"type": "fixed", "delay": 1e20, "max_delay": 1e30, "jitter": 0.0},
    }
    opts = JobOptions.from_json(stored)
    assert (opts.delay, opts.attempts, opts.timeout) == (315_360_000.0, 1_000_000, 31_536_000.0)
    assert opts.priority == 2**21 and opts.backoff.delay == 315_360_000.0
