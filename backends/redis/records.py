"""How a job is laid out in its Redis hash, and how script replies become ``JobRecord``s."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from polyjobs.backend import JobRecord, JobState

try:
    import orjson

    def loads(text: str) -> Any:
        """JSON of engine-made values (options, schedules, worker info); for users' payloads
        see :func:`payload`."""
        return orjson.loads(text)

    def dumps(value: Any) -> str:
        """Compact JSON of engine-made values (options, records): plain JSON types only."""
        return orjson.dumps(value).decode()

except ImportError:  # pragma: no cover - orjson is an optional speed-up

    def loads(text: str) -> Any:
        return json.loads(text)

    def dumps(value: Any) -> str:
        """Compact JSON of engine-made values (options, records): plain JSON types only."""
        return json.dumps(value, separators=(",", ":"))


#: Job-hash fields a script returns for a job, in this order (see ``common.lua``).
FIELDS: tuple[str, ...] = (
    "n",  # name
    "d",  # data (JSON)
    "o",  # opts (JSON)
    "st",  # state
    "ts",  # timestamp
    "ra",  # run_at
    "p",  # priority
    "am",  # attempts made
    "as",  # attempts started
    "sc",  # stalls
    "pg",  # progress (JSON)
    "rv",  # returnvalue (JSON)
    "fr",  # failed reason
    "tr",  # stacktrace
    "po",  # processed on
    "fo",  # finished on
    "tk",  # owner token
    "lu",  # lease until
)
STRIDE = 1 + len(FIELDS)


#: How a job record that cannot be decoded is marked (``failed_reason``), and how a fetch fails it.
CORRUPTED = "job record is corrupted"
#: The reason for a job whose key holds another type than a hash (as the scripts word it).
NOT_A_HASH = f"{CORRUPTED}: its key is not a hash"
#: The reason for a job whose hash is gone (or has no state) while its id is in a state's set.
MISSING = "job record is missing"


def _float(value: str | None) -> float | None:
    return float(value) if value else None


# what json.loads ends in (set by JSONDecoder.__init__, not in the type stubs)
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def payload(value: str | None) -> Any:
    """A user's JSON (data, progress, returnvalue) by the standard library, which keeps integers
    of any size as memory and SQLite do: orjson turns integers beyond 64 bits into floats.

    The decoder's scanner is called directly (one C call, what ``json.loads`` ends in); text it
    does not take whole (leading or trailing whitespace, invalid JSON) goes through ``json.loads``,
    which returns the same value or raises its usual error."""
    if not value:
        return None
    try:
        found, end = _scan(value, 0)
    except StopIteration:
        return json.loads(value)
    return found if end == len(value) else json.loads(value)


def _opts(value: str | None) -> dict[str, Any]:
    opts = (loads(value) if value else None) or {}
    if type(opts) is not dict:
        raise ValueError("opts is not a JSON object")
    return opts


def record(job_id: str, v: Sequence[str | None]) -> JobRecord:
    """A ``JobRecord`` from an id and the ``FIELDS`` values of its hash. A field that cannot be
    decoded (bad JSON, a non-number) comes back empty, and ``failed_reason`` says so."""
    return decode(job_id, v)[0]


#: The options text a fetch decoded last, and its dict (see :func:`_shared_opts`).
_last_opts: tuple[str | None, dict[str, Any]] = (None, {})


def _shared_opts(value: str | None) -> dict[str, Any]:
    """:func:`_opts` for the jobs a fetch takes: the jobs of a queue mostly share their options,
    so the last text's dict is handed out again, one dict for all of them (``Job`` copies it
    before anyone may change it; ``Worker`` compares it by identity first)."""
    global _last_opts
    last = _last_opts
    if value and value == last[0]:
        return last[1]
    opts = _opts(value)
    if value:
        _last_opts = (value, opts)
    return opts


#: What decoding a corrupted field raises (bad JSON, a non-number, JSON nested too deep).
UNDECODABLE = (ValueError, TypeError, RecursionError)


def decode(job_id: str, v: Sequence[str | None]) -> tuple[JobRecord, str | None]:
    """:func:`record`, and why the record is corrupted (``None`` when it is not)."""
    try:
        return _record(job_id, v, _opts(v[2])), None
    except UNDECODABLE:
        return _salvaged(job_id, v)


def _record(job_id: str, v: Sequence[str | None], opts: dict[str, Any]) -> JobRecord:
    # positional, in JobRecord's field order (one call per field less than keywords and
    # helpers: this runs for every job a worker takes)
    state: Any = v[3]
    processed_on, finished_on, lease_until = v[14], v[15], v[17]
    return JobRecord(
        job_id,
        v[0] or "",
        payload(v[1]),
        opts,
        state,
        float(v[4] or 0),
        float(v[5] or 0),
        int(v[6] or 0),
        int(v[7] or 0),
        int(v[8] or 0),
        int(v[9] or 0),
        payload(v[10]) if v[10] else None,
        payload(v[11]) if v[11] else None,
        v[12] or None,
        v[13] or None,
        float(processed_on) if processed_on else None,
        float(finished_on) if finished_on else None,
        v[16] or None,
        float(lease_until) if lease_until else None,
    )


#: Per field position: what it is called in a corruption reason, how it decodes.
_DECODERS: tuple[tuple[int, str, Callable[[Any], Any]], ...] = (
    (1, "data is not JSON", payload),
    (2, "opts is not a JSON object", _opts),
    (4, "timestamp is not a number", lambda x: float(x or 0)),
    (5, "run_at is not a number", lambda x: float(x or 0)),
    (6, "priority is not an integer", lambda x: int(x or 0)),
    (7, "attempts made is not an integer", lambda x: int(x or 0)),
    (8, "attempts started is not an integer", lambda x: int(x or 0)),
    (9, "stalls is not an integer", lambda x: int(x or 0)),
    (10, "progress is not JSON", payload),
    (11, "returnvalue is not JSON", payload),
    (14, "processed_on is not a number", _float),
    (15, "finished_on is not a number", _float),
    (17, "lease_until is not a number", _float),
)


def _salvaged(job_id: str, v: Sequence[str | None]) -> tuple[JobRecord, str]:
    values: list[Any] = list(v)
    problems = []
    for i, problem, decode in _DECODERS:
        try:
            decode(values[i])
        except UNDECODABLE:
            problems.append(problem)
            values[i] = None
    reason = f"{CORRUPTED}: {', '.join(problems)}"
    values[12] = reason if not v[12] or v[12] == reason else f"{reason} (last failure: {v[12]})"
    return _record(job_id, values, _opts(values[2])), reason


def records(flat: Sequence[Any], start: int = 0) -> list[JobRecord]:
    """Records from a flat reply ``[id, FIELDS..., id, FIELDS..., ...]`` from ``start``."""
    return [record(flat[i], flat[i + 1 : i + STRIDE]) for i in range(start, len(flat), STRIDE)]


def taken(flat: Sequence[Any], start: int = 0) -> tuple[list[JobRecord], list[tuple[str, str]]]:
    """Like :func:`records`, for jobs a fetch took: the sound records, and (id, reason) for
    those that cannot be decoded (the caller fails them instead of running them). Records with
    the same options text share one ``opts`` dict (:func:`_shared_opts`): not to be changed."""
    jobs: list[JobRecord] = []
    broken: list[tuple[str, str]] = []
    for i in range(start, len(flat), STRIDE):
        v = flat[i + 1 : i + STRIDE]
        try:  # decode() without its call: the sound record is the hot path
            jobs.append(_record(flat[i], v, _shared_opts(v[2])))
        except UNDECODABLE:
            broken.append((flat[i], _salvaged(flat[i], v)[1]))
    return jobs, broken


def job_state(value: str | None) -> JobState | None:
    states: dict[str | None, JobState] = {
        "waiting": "waiting",
        "delayed": "delayed",
        "active": "active",
        "waiting-children": "waiting-children",
        "completed": "completed",
        "failed": "failed",
    }
    return states.get(value)
