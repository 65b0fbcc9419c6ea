"""A replay source: a JSONL file of Data API trade rows, replayed with fresh timestamps.

Each line is one v1 row (camelCase; v2 snake_case rows are read too). At ``speed`` S > 0 the
file plays in ``span / S`` seconds of wall time from the first poll: a row ``d`` seconds after
the file's first one is due ``d / S`` seconds after the replay started and is stamped with
that moment. At ``speed`` 0 the whole file is due at once, shifted so that its last row is
stamped with the replay's start (the file's spacing kept, ending "now"). Lines that are not
trade rows are skipped and counted, with one warning.

``polyjobs replay`` (:mod:`polyjobs.processors.replay`) reads a file once instead: the trades
keep their own times (``keep_times``), only those inside ``[since, until)`` are read, at
most ``page`` per poll, and ``run`` tells one run's watermark from an earlier run's.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyjobs.errors import ConfigError, InvalidArgumentError
from polyjobs.polymarket.ingest import SourceBatch
from polyjobs.polymarket.models import Trade

log = logging.getLogger(__name__)


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The rows of a JSONL file (sorted by timestamp) and how many lines were not rows."""
    rows: list[dict[str, Any]] = []
    bad = 0
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the replay file {path}: {exc.strerror}") from None
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            float(row["timestamp"])
        except (ValueError, TypeError, KeyError):
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    rows.sort(key=lambda r: float(r["timestamp"]))
    return rows, bad


class ReplaySource:
    """``POLYJOBS_INGEST_SOURCE=replay:<path>``: the file's trades at ``speed`` x real time."""

    name = "replay"

    def __init__(
        self,
        path: Path | str,
        speed: float = 1.0,
        *,
        keep_times: bool = False,
        since: float | None = None,
        until: float | None = None,
        page: int | None = None,
        run: str | None = None,
    ) -> None:
        if speed < 0:
            raise InvalidArgumentError(f"replay speed must be >= 0, got {speed!r}")
        if page is not None and page < 1:
            raise InvalidArgumentError(f"replay page must be >= 1, got {page!r}")
        self.path = Path(path)
        self.speed = speed
        self.keep_times = keep_times
        self.since, self.until, self.page, self.run = since, until, page, run
        self._rows: list[dict[str, Any]] | None = None
        self._times: list[float] = []
        self._bad = 0
        self.outside = 0  # rows outside [since, until)

    @property
    def unreadable(self) -> int:
        """Lines of the file that are not trade rows."""
        return self._bad

    async def load(self) -> list[dict[str, Any]]:
        """The file's rows inside the window, by time (read once)."""
        if self._rows is None:
            rows, self._bad = await asyncio.to_thread(read_rows, self.path)
            inside = [r for r in rows if self._inside(float(r["timestamp"]))]
            self.outside = len(rows) - len(inside)
            self._rows = inside
            self._times = [float(r["timestamp"]) for r in inside]
            if self._bad:
                log.warning("replay %s: skipped %d non-trade line(s)", self.path, self._bad)
        return self._rows

    def _inside(self, ts: float) -> bool:
        return (self.since is None or ts >= self.since) and (self.until is None or ts < self.until)

    def _stamp(self, ts: float, started: float) -> float:
        if self.keep_times:
            return ts
        first, last = self._times[0], self._times[-1]
        if self.speed == 0:
            return int(started - (last - ts))
        return int(started + (ts - first) / self.speed)

    async def read(self, state: Mapping[str, Any] | None, now: float) -> SourceBatch:
        rows = await self.load()
        fresh = state is None or state.get("path") != str(self.path) or state.get("run") != self.run
        started = now if fresh or state is None else float(state["startedAt"])
        position = 0 if fresh or state is None else int(state["position"])
        if not rows:
            due = 0
        elif self.speed == 0:
            due = len(rows)
        else:
            due = bisect.bisect_right(self._times, self._times[0] + (now - started) * self.speed)
        if self.page is not None:
            due = min(due, position + self.page)
        trades: list[Trade] = []
        skipped = self._bad if fresh else 0
        for row in rows[position:due]:
            stamped = {**row, "timestamp": self._stamp(float(row["timestamp"]), started)}
            try:
                trades.append(Trade.from_api(stamped, ingested_at=now))
            except InvalidArgumentError:
                skipped += 1
        if skipped - (self._bad if fresh else 0):
            log.warning("replay %s: skipped %d malformed trade row(s)", self.path, skipped)
        new_state = {"path": str(self.path), "startedAt": started, "position": max(due, position)}
        if self.run is not None:
            new_state["run"] = self.run
        return SourceBatch(trades, new_state, skipped=skipped, exhausted=due >= len(rows))
