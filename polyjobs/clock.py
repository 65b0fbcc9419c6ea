"""Times as people read them, for any stored timestamp (one far out of range included)."""

from __future__ import annotations

import math
import time

DATE_TIME = "%Y-%m-%d %H:%M:%S"


def local_time(timestamp: float | None, fmt: str = DATE_TIME) -> str:
    """``timestamp`` (seconds since the epoch) in local time; ``""`` for none, and a plain
    description instead of an error for one no calendar can show (a record stored with a delay
    of 10**20 s before options had bounds)."""
    if not timestamp:
        return ""
    try:
        return time.strftime(fmt, time.localtime(timestamp))
    except (OverflowError, OSError, ValueError):
        if isinstance(timestamp, int | float) and not math.isnan(timestamp) and timestamp > 0:
            return f"far future ({timestamp:.4g})"
        return f"invalid time ({timestamp!r})"
