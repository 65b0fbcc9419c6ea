"""What ``polyjobs start`` prints while it runs: job events, log records, alerts, notes.

Everything goes through one :class:`Events` object and so through the one console:

- ``--log-format text``: job events on stdout, one line each; log records and notes on
  stderr; alerts (the console alert sink) on stdout as the blocks they are. With a live view,
  all of it prints above the view instead of through it.
- ``--log-format json``: every line on stdout is one JSON object with the same keys::

      {"time": "2026-11-29T16:03:54.123Z", "level": "info", "event": "completed",
       "queue": "polymarket-alerts", "job_id": "42", "message": "...", "detail": {...}}

  ``event`` is a job event (``completed``, ``failed``, ``retrying``, ``stalled``), ``alert``,
  ``stopping``, ``started``, ``stopped``, ``note`` or ``log`` (any other log record, its
  logger in ``detail``). ``queue`` and ``job_id`` are null when they do not apply.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Literal

from polyjobs.cli.console import Console
from polyjobs.redact import redact_text, redact_value

LogFormat = Literal["text", "json"]
#: Keys a log record may carry (``extra=``) to become a structured event.
EVENT, QUEUE, JOB_ID, DETAIL = "event", "queue", "job_id", "detail"
JOB_LEVELS = {"failed": "error", "retrying": "warning", "stalled": "warning"}


def iso_time(ts: float) -> str:
    """``2026-11-29T16:03:54.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _jsonable(value: Any) -> Any:
    return redact_value(json.loads(json.dumps(value, default=str)))


class Events:
    """Prints one run's events in the chosen format (see the module docstring)."""

    def __init__(self, console: Console, log_format: LogFormat) -> None:
        self.console = console
        self.format = log_format

    def emit(
        self,
        event: str,
        message: str,
        *,
        level: str = "info",
        queue: str | None = None,
        job_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
        stream: Literal["out", "err"] = "err",
        at: float | None = None,
    ) -> None:
        if self.format == "json":
            record = {
                "time": iso_time(time.time() if at is None else at),
                "level": level,
                "event": event,
                "queue": queue,
                "job_id": job_id,
                "message": redact_text(message),
                "detail": _jsonable(dict(detail or {})),
            }
            self.console.raw_line(json.dumps(record, ensure_ascii=False))
        elif stream == "out":
            self.console.line(message)
        else:
            self.console.note(message)

    def note(self, message: str, event: str = "note") -> None:
        """A line about the run itself (``polyjobs: backend ...``)."""
        self.emit(event, message)

    def job(self, event: str, queue: str, job_id: str, payload: Mapping[str, Any]) -> None:
        detail = payload.get("failed_reason") or ""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.emit(
            event,
            f"{stamp} {event} {queue} {job_id} {detail}".rstrip(),
            level=JOB_LEVELS.get(event, "info"),
            queue=queue,
            job_id=job_id,
            detail=payload,
            stream="out",
        )


class EventsHandler(logging.Handler):
    """Log records as :class:`Events`: one line (text) or one JSON object each, secrets
    redacted, through the console (so above a live view, never through it)."""

    def __init__(self, events: Events) -> None:
        super().__init__()
        self.events = events
        self.plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record)
        except Exception:
            self.handleError(record)

    def _emit(self, record: logging.LogRecord) -> None:
        message = redact_text(record.getMessage())
        event = str(getattr(record, EVENT, "log"))
        detail: dict[str, Any] = dict(getattr(record, DETAIL, None) or {})
        if record.exc_info and record.exc_info[1] is not None:
            detail["exception"] = redact_text(self.plain.formatException(record.exc_info))
        text = self._text(record, event, message, detail)
        if event == "log":
            detail["logger"] = record.name
        self.events.emit(
            event,
            message if self.events.format == "json" else text,
            level=record.levelname.lower(),
            queue=getattr(record, QUEUE, None),
            job_id=getattr(record, JOB_ID, None),
            detail=detail,
            stream="out" if event == "alert" else "err",
            at=record.created,
        )

    def _text(
        self, record: logging.LogRecord, event: str, message: str, detail: Mapping[str, Any]
    ) -> str:
        if event == "alert":
            return message
        if event == "stopping":
            active, grace = detail.get("active", 0), detail.get("grace", 0)
            return f"stopping: {active} active job(s), up to {grace:g}s; Ctrl-C again to force"
        if event == "forcing":
            return "stopping now: unfinished jobs go back to their queues"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        text = f"{stamp} {record.levelname} {record.name}: {message}"
        if "exception" in detail:
            text += "\n" + str(detail["exception"])
        return text


def configure_logging(events: Events) -> None:
    """Route every log record through ``events`` (the CLI's one handler)."""
    handler = EventsHandler(events)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    level = logging.INFO if os.environ.get("POLYJOBS_DEBUG") is None else logging.DEBUG
    logging.getLogger("polyjobs").setLevel(level)
    # httpx logs every request URL at INFO; URLs may carry tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
