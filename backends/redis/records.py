"""How a job is laid out in its Redis hash, and how script replies become ``JobRecord``s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polyjobs.backend import JobRecord, JobState

try:
    import orjson

    def loads(text: str) -> Any:
        return orjson.loads(text)

    def dumps(value: Any) -> str:
        """Compact JSON of engine-made values (options, records): plain JSON types only."""
        return orjson.dumps(value).decode()

except ImportError:  # pragma: no cover - orjson is an optional speed-up
    import json

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


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _json(value: str | None) -> Any:
    return loads(value) if value else None


def _text(value: str | None) -> str | None:
    return value or None


def record(job_id: str, v: Sequence[str | None]) -> JobRecord:
    """A ``JobRecord`` from an id and the ``FIELDS`` values of its hash."""
    state: Any = v[3]
    return JobRecord(
        id=job_id,
        name=v[0] or "",
        data=_json(v[1]),
        opts=_json(v[2]) or {},
        state=state,
        timestamp=float(v[4] or 0),
        run_at=float(v[5] or 0),
        priority=int(v[6] or 0),
        attempts_made=int(v[7] or 0),
        attempts_started=int(v[8] or 0),
        stalls=int(v[9] or 0),
        progress=_json(v[10]),
        returnvalue=_json(v[11]),
        failed_reason=_text(v[12]),
        stacktrace=_text(v[13]),
        processed_on=_float(v[14]),
        finished_on=_float(v[15]),
        worker=_text(v[16]),
        lease_until=_float(v[17]),
    )


def records(flat: Sequence[Any], start: int = 0) -> list[JobRecord]:
    """Records from a flat reply ``[id, FIELDS..., id, FIELDS..., ...]`` from ``start``."""
    return [record(flat[i], flat[i + 1 : i + STRIDE]) for i in range(start, len(flat), STRIDE)]


def job_state(value: str | None) -> JobState | None:
    states: dict[str | None, JobState] = {
        "waiting": "waiting",
        "delayed": "delayed",
        "active": "active",
        "completed": "completed",
        "failed": "failed",
    }
    return states.get(value)
