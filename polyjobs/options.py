"""Job options: parsing, validation and their JSON form.

Everything here is checked when a job is added, so a bad option is a clear
:class:`~polyjobs.errors.InvalidArgumentError` at ``Queue.add`` time, never a surprise in a worker.
Durations are seconds (``float``) or :class:`datetime.timedelta` everywhere in the Python API.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from operator import attrgetter
from typing import Any, Literal

from polyjobs.errors import InvalidArgumentError

Duration = float | int | timedelta
MAX_PRIORITY = 2**21
#: Bounds of a job's options, checked at add: beyond them a value is a mistake (or an attack),
#: and stored times must stay ones every backend, page and terminal can show.
MAX_DELAY = 10 * 365 * 86400.0  # 10 years: delay, backoff delay and max_delay
MAX_TIMEOUT = 365 * 86400.0  # 1 year
MAX_ATTEMPTS = 1_000_000
MAX_JOB_ID_LENGTH = 256
_JOB_ID_RE = re.compile(r"^[^\s\x00-\x1f\x7f\ud800-\udfff]+$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def seconds(
    value: Duration | str | None, what: str = "duration", maximum: float | None = None
) -> float:
    """Seconds from a number, a ``timedelta`` or a string (``"500ms"``, ``"30s"``, ``"10m"``),
    at most ``maximum`` when it is given."""
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        secs = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be a number of seconds, got {value!r}")
    elif isinstance(value, int | float):
        try:
            secs = float(value)
        except OverflowError:
            secs = math.inf
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise InvalidArgumentError(
                f"{what} {value!r} is not a duration (examples: 500ms, 30s, 10m, 1h)"
            )
        secs = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise InvalidArgumentError(f"{what} must be seconds or a timedelta, got {value!r}")
    if math.isnan(secs) or math.isinf(secs) or secs < 0:
        raise InvalidArgumentError(f"{what} must be a finite number >= 0, got {_short(value)}")
    if maximum is not None and secs > maximum:
        raise InvalidArgumentError(
            f"{what} must be at most {_span(maximum)} ({maximum:.0f} s), got {_short(value)}"
        )
    return secs


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _span(secs: float) -> str:
    years, days = secs / (365 * 86400.0), secs / 86400.0
    if years >= 1:
        return f"{years:g} year{'s' if years != 1 else ''}"
    return f"{days:g} day{'s' if days != 1 else ''}"


def _bounded_int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{what} must be an integer, got {_short(value)}")
    if not low <= value <= high:
        raise InvalidArgumentError(f"{what} must be within {low}..{high}, got {_short(value)}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"{what} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before the next attempt.

    ``fixed``: always ``delay``. ``exponential``: ``delay * 2 ** (attempts_made - 1)``.
    ``jitter`` (0..1) takes a random part of up to that fraction off each delay;
    ``max_delay`` caps it.
    """

    type: Literal["fixed", "exponential"] = "fixed"
    delay: float = 0.0
    jitter: float = 0.0
    max_delay: float | None = None

    def __post_init__(self) -> None:
        if self.type not in ("fixed", "exponential"):
            raise InvalidArgumentError(
                f"unknown backoff type {self.type!r} (use 'fixed' or 'exponential')"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidArgumentError(f"backoff jitter must be within 0..1, got {self.jitter}")
        for what, value in (("backoff delay", self.delay), ("backoff max_delay", self.max_delay)):
            if value is not None and not 0.0 <= value <= MAX_DELAY:
                raise InvalidArgumentError(
                    f"{what} must be within 0..{MAX_DELAY:.0f} s ({_span(MAX_DELAY)}), "
                    f"got {_short(value)}"
                )

    def delay_for(self, attempts_made: int, rng: random.Random | None = None) -> float:
        """The delay before the next attempt, after ``attempts_made`` attempts."""
        if self.type == "fixed":
            wait = self.delay
        else:
            wait = self.delay * 2 ** max(attempts_made - 1, 0)
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        if self.jitter:
            wait -= wait * self.jitter * (rng or random).random()
        return wait

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "delay": self.delay,
            "jitter": self.jitter,
            "max_delay": self.max_delay,
        }

    @classmethod
    def parse(cls, value: Any) -> Backoff:
        """Accept a ``Backoff``, a number (fixed delay), or ``{"type", "delay", "jitter"}``."""
        if isinstance(value, Backoff):
            return value
        if value is None:
            return cls()
        if isinstance(value, int | float | timedelta) and not isinstance(value, bool):
            return cls("fixed", seconds(value, "backoff delay", MAX_DELAY))
        if isinstance(value, str):
            return cls(value, 0.0)  # type: ignore[arg-type]  # validated in __post_init__
        if isinstance(value, Mapping):
            unknown = set(value) - {"type", "delay", "jitter", "max_delay"}
            if unknown:
                raise InvalidArgumentError(f"unknown backoff keys: {', '.join(sorted(unknown))}")
            max_delay = value.get("max_delay")
            return cls(
                value.get("type", "fixed"),
                seconds(value.get("delay", 0.0), "backoff delay", MAX_DELAY),
                _number(value.get("jitter", 0.0), "backoff jitter"),
                None if max_delay is None else seconds(max_delay, "backoff max_delay", MAX_DELAY),
            )
        raise InvalidArgumentError(f"backoff must be a number, a mapping or a Backoff: {value!r}")


@dataclass(frozen=True, slots=True)
class Keep:
    """Retention of finished jobs: keep at most ``count`` of them and none older than ``age`` s.

    ``None`` means no limit on that axis; ``Keep(count=0)`` removes jobs as they finish.
    """

    count: int | None = None
    age: float | None = None

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 0:
            raise InvalidArgumentError(f"retention count must be >= 0, got {self.count}")
        if self.age is not None and self.age < 0:
            raise InvalidArgumentError(f"retention age must be >= 0, got {self.age}")

    @property
    def removes_at_once(self) -> bool:
        return self.count == 0 or self.age == 0

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "age": self.age}

    @classmethod
    def parse(cls, value: Any, default: Keep) -> Keep:
        """``True``: remove at once; ``False``: keep all; an int: a count; a ``timedelta``: an
        age; a mapping ``{"count": n, "age": seconds}`` or a ``Keep``: both."""
        if value is None:
            return default
        if isinstance(value, Keep):
            return value
        if value is True:
            return cls(count=0)
        if value is False:
            return cls()
        if isinstance(value, int):
            return cls(count=value)
        if isinstance(value, timedelta):
            return cls(age=value.total_seconds())
        if isinstance(value, Mapping):
            unknown = set(value) - {"count", "age"}
            if unknown:
                raise InvalidArgumentError(f"unknown retention keys: {', '.join(sorted(unknown))}")
            count, age = value.get("count"), value.get("age")
            if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
                raise InvalidArgumentError(f"retention count must be an integer, got {count!r}")
            return cls(count, None if age is None else seconds(age, "retention age"))
        raise InvalidArgumentError(
            f"retention must be True, False, a count, a timedelta or {{count, age}}: {value!r}"
        )

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None, default: Keep) -> Keep:
        if value is None:
            return default
        return cls(value.get("count"), value.get("age"))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max`` job starts in any window of ``duration`` seconds, across every worker
    sharing the backend. Parse ``"5/2s"`` with :meth:`parse`."""

    max: int
    duration: float

    def __post_init__(self) -> None:
        if isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < 1:
            raise InvalidArgumentError(f"rate limit max must be an integer >= 1, got {self.max!r}")
        if not self.duration > 0 or math.isinf(self.duration):
            raise InvalidArgumentError(f"rate limit duration must be > 0 s, got {self.duration}")

    def __str__(self) -> str:
        return f"{self.max}/{self.duration:g}s"

    def to_json(self) -> dict[str, Any]:
        return {"max": self.max, "duration": self.duration}

    @classmethod
    def parse(cls, value: Any) -> RateLimit:
        """Accept a ``RateLimit``, ``"5/2s"`` (also ``"30/1m"``, ``"10/500ms"``) or
        ``{"max": 5, "duration": 2}``."""
        if isinstance(value, RateLimit):
            return value
        if isinstance(value, Mapping):
            count = value.get("max")
            if not isinstance(count, int):
                raise InvalidArgumentError(f"rate limit max must be an integer, got {count!r}")
            return cls(count, seconds(value.get("duration"), "rate limit duration"))
        if isinstance(value, str) and "/" in value:
            count, _, per = value.partition("/")
            if not count.strip().isdigit():
                raise InvalidArgumentError(f"rate limit {value!r} must look like 5/2s")
            return cls(int(count), seconds(per, "rate limit duration"))
        raise InvalidArgumentError(f"rate limit {value!r} must look like 5/2s")


FailurePolicy = Literal["wait", "fail", "ignore", "remove", "continue"]
#: The job option that picks each failure policy of a flow's child (``wait`` is the default).
POLICY_OPTIONS: dict[str, FailurePolicy] = {
    "fail_parent_on_failure": "fail",
    "ignore_dependency_on_failure": "ignore",
    "remove_dependency_on_failure": "remove",
    "continue_parent_on_failure": "continue",
}


@dataclass(frozen=True, slots=True)
class Deduplication:
    """A deduplication window: while job J holds ``id`` in its queue, adds with the same id are
    absorbed and return J.

    * simple (``id`` alone): held until J ends (completed, or failed for good);
    * throttle (``ttl``): held for ``ttl`` seconds from the add, whatever J does;
    * ``extend`` (needs ``ttl``): every absorbed add restarts the ``ttl``;
    * ``replace``: an absorbed add while J has not started (waiting or delayed) gives J its
      name, data, options and delay (the delay restarts); with ``extend`` and a delay this is a
      debounce: the last data wins and runs once the adds pause for the delay;
    * ``keep_last_if_active``: an absorbed add while J is active is kept (the newest wins) and
      becomes a new job, the new holder, when J ends: one more run with the newest data.
    """

    id: str
    ttl: float | None = None
    extend: bool = False
    replace: bool = False
    keep_last_if_active: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or len(self.id) > MAX_JOB_ID_LENGTH:
            raise InvalidArgumentError(
                f"deduplication id must be a string of 1..{MAX_JOB_ID_LENGTH} characters, "
                f"got {self.id!r}"
            )
        if not _JOB_ID_RE.match(self.id):
            raise InvalidArgumentError(
                f"deduplication id {self.id[:40]!r} may not hold spaces or control characters"
            )
        if self.ttl is not None and self.ttl <= 0:
            raise InvalidArgumentError(f"deduplication ttl must be > 0 seconds, got {self.ttl}")
        if self.extend and self.ttl is None:
            raise InvalidArgumentError("deduplication extend needs a ttl to extend")
        if self.keep_last_if_active and self.ttl is not None:
            raise InvalidArgumentError(
                "deduplication keep_last_if_active holds the id until the job ends: no ttl"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ttl": self.ttl,
            "extend": self.extend,
            "replace": self.replace,
            "keep_last_if_active": self.keep_last_if_active,
        }

    @classmethod
    def parse(cls, value: Any) -> Deduplication | None:
        """Accept a ``Deduplication``, None, or ``{"id", "ttl", "extend", "replace",
        "keep_last_if_active"}`` (``ttl`` in seconds or a duration string)."""
        if value is None or isinstance(value, Deduplication):
            return value
        if not isinstance(value, Mapping):
            raise InvalidArgumentError(f"deduplication must be a mapping with an id: {value!r}")
        unknown = set(value) - {"id", "ttl", "extend", "replace", "keep_last_if_active"}
        if unknown:
            raise InvalidArgumentError(f"unknown deduplication keys: {', '.join(sorted(unknown))}")
        flags = {}
        for key in ("extend", "replace", "keep_last_if_active"):
            flag = value.get(key, False)
            if not isinstance(flag, bool):
                raise InvalidArgumentError(f"deduplication {key} must be true or false")
            flags[key] = flag
        ttl = value.get("ttl")
        return cls(
            id=value.get("id"),  # type: ignore[arg-type]  # checked in __post_init__
            ttl=None if ttl is None else seconds(ttl, "deduplication ttl"),
            **flags,
        )


KEEP_COMPLETED = Keep(count=100)
KEEP_FAILED = Keep(count=1000)


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The options of one job, validated. Build with :meth:`parse`."""

    job_id: str | None = None
    delay: float = 0.0
    priority: int = 0
    lifo: bool = False
    attempts: int = 1
    backoff: Backoff = field(default_factory=Backoff)
    timeout: float | None = None
    remove_on_complete: Keep = KEEP_COMPLETED
    remove_on_fail: Keep = KEEP_FAILED
    deduplication: Deduplication | None = None
    failure_policy: FailurePolicy = "wait"  # for a flow's child: see POLICY_OPTIONS
    group: str | None = None  # its group (fair turns, per-group limits): see Queue.add

    def __post_init__(self) -> None:
        if self.job_id is not None:
            check_job_id(self.job_id)
        if self.group is not None:
            check_group(self.group)
        _bounded_int(self.priority, "priority", 0, MAX_PRIORITY)
        _bounded_int(self.attempts, "attempts", 1, MAX_ATTEMPTS)
        if not 0.0 <= self.delay <= MAX_DELAY:
            raise InvalidArgumentError(
                f"delay must be within 0..{MAX_DELAY:.0f} s ({_span(MAX_DELAY)}), "
                f"got {_short(self.delay)}"
            )
        if self.timeout is not None and not 0 < self.timeout <= MAX_TIMEOUT:
            raise InvalidArgumentError(
                f"timeout must be > 0 and at most {MAX_TIMEOUT:.0f} s ({_span(MAX_TIMEOUT)}), "
                f"got {_short(self.timeout)}"
            )

    _KEYS = frozenset(
        {
            "job_id",
            "delay",
            "priority",
            "lifo",
            "attempts",
            "backoff",
            "timeout",
            "remove_on_complete",
            "remove_on_fail",
            "deduplication",
            "group",
            *POLICY_OPTIONS,
        }
    )

    @classmethod
    def parse(cls, options: Mapping[str, Any], defaults: JobOptions | None = None) -> JobOptions:
        """Validate user options over ``defaults``; raise ``InvalidArgumentError`` on bad ones."""
        base = defaults or cls()
        if not options:
            return base
        if not cls._KEYS.issuperset(options):
            unknown = set(options) - cls._KEYS
            raise InvalidArgumentError(f"unknown job options: {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        policies = []
        for key, value in options.items():
            if key in POLICY_OPTIONS:
                if not isinstance(value, bool):
                    raise InvalidArgumentError(f"{key} must be true or false, got {value!r}")
                if value:
                    policies.append(key)
                    changes["failure_policy"] = POLICY_OPTIONS[key]
                continue
            changes[key] = _parse_option(key, value, base)
        if len(policies) > 1:
            raise InvalidArgumentError(f"choose one of {', '.join(sorted(policies))}")
        # ``dataclasses.replace(base, **changes)``, without its Python per field
        values = dict(zip(_JOB_OPTION_NAMES, _job_option_values(base), strict=True))
        values.update(changes)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The stored form, a JSON object (the job's ``opts``)."""
        extra: dict[str, Any] = {}
        if self.deduplication is not None:
            extra["deduplication"] = self.deduplication.to_json()
        if self.failure_policy != "wait":
            extra["failure_policy"] = self.failure_policy
        if self.group is not None:
            extra["group"] = self.group
        return {
            "job_id": self.job_id,
            "delay": self.delay,
            "priority": self.priority,
            "lifo": self.lifo,
            "attempts": self.attempts,
            "backoff": self.backoff.to_json(),
            "timeout": self.timeout,
            "remove_on_complete": self.remove_on_complete.to_json(),
            "remove_on_fail": self.remove_on_fail.to_json(),
            **extra,
        }

    @classmethod
    def from_json(cls, opts: Mapping[str, Any]) -> JobOptions:
        """Read stored options back, tolerating missing keys (older records) and values out of
        today's bounds (records stored before there were bounds: clamped into them)."""
        backoff = opts.get("backoff") or {}
        if isinstance(backoff, Mapping):
            backoff = {
                k: _clamp(v, 0.0, MAX_DELAY) if k in ("delay", "max_delay") and v else v
                for k, v in backoff.items()
            }
        timeout = opts.get("timeout")
        return cls(
            job_id=opts.get("job_id"),
            delay=_clamp(opts.get("delay") or 0.0, 0.0, MAX_DELAY),
            priority=int(_clamp(opts.get("priority") or 0, 0, MAX_PRIORITY)),
            lifo=bool(opts.get("lifo")),
            attempts=int(_clamp(opts.get("attempts") or 1, 1, MAX_ATTEMPTS)),
            backoff=Backoff.parse(backoff),
            timeout=None if timeout is None else _clamp(timeout, 0.001, MAX_TIMEOUT),
            remove_on_complete=Keep.from_json(opts.get("remove_on_complete"), KEEP_COMPLETED),
            remove_on_fail=Keep.from_json(opts.get("remove_on_fail"), KEEP_FAILED),
            deduplication=Deduplication.parse(opts.get("deduplication")),
            failure_policy=opts.get("failure_policy") or "wait",
            group=_stored_group(opts.get("group")),
        )


_JOB_OPTION_NAMES = tuple(f.name for f in fields(JobOptions))
_job_option_values = attrgetter(*_JOB_OPTION_NAMES)


def _clamp(value: Any, low: float, high: float) -> float:
    number = float(value)
    return low if math.isnan(number) else min(max(number, low), high)


def _parse_option(key: str, value: Any, base: JobOptions) -> Any:
    if key == "job_id":
        return None if value is None else check_job_id(value)
    if key == "delay":
        return seconds(value, "delay", MAX_DELAY)
    if key == "timeout":
        return None if value is None else seconds(value, "timeout", MAX_TIMEOUT)
    if key == "priority":
        return _bounded_int(value, key, 0, MAX_PRIORITY)
    if key == "attempts":
        return _bounded_int(value, key, 1, MAX_ATTEMPTS)
    if key == "lifo":
        return bool(value)
    if key == "backoff":
        return Backoff.parse(value)
    if key == "remove_on_complete":
        return Keep.parse(value, base.remove_on_complete)
    if key == "deduplication":
        return Deduplication.parse(value)
    if key == "group":
        return None if value is None else check_group(value)
    return Keep.parse(value, base.remove_on_fail)


def _check_name(value: Any, what: str, most: int) -> str:
    """A non-empty string of at most ``most`` printable, non-space characters (an integer is
    taken as its decimal text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {_short(value)}")
    if len(value) > most or not _JOB_ID_RE.match(value):
        raise InvalidArgumentError(
            f"{what} {value[:40]!r} must be at most {most} characters "
            "without spaces or control characters"
        )
    return value


def check_job_id(job_id: Any) -> str:
    """A job id is a non-empty string of at most 256 printable, non-space characters."""
    return _check_name(job_id, "job id", MAX_JOB_ID_LENGTH)


#: The longest group name (``Queue.add(..., group=...)``).
MAX_GROUP_LENGTH = 256


def check_group(group: Any) -> str:
    """A group is a non-empty string of at most 256 printable, non-space characters (an
    integer is taken as its decimal text)."""
    return _check_name(group, "group", MAX_GROUP_LENGTH)


def _stored_group(value: Any) -> str | None:
    """A stored job's group (None for a record without one, or with one not valid today)."""
    try:
        return None if value is None else check_group(value)
    except InvalidArgumentError:
        return None
