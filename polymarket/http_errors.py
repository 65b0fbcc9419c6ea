"""One line for a failed HTTP request: which host, and what the network said."""

from __future__ import annotations

import errno as errno_names
import os

import httpx


def describe_http_error(exc: httpx.HTTPError) -> str:
    """``data-api.polymarket.com: connection refused (ECONNREFUSED)`` or
    ``nonexistent.invalid: name or service not known (DNS)``: the host and the deepest cause
    the exception chain holds, never the URL (it may carry a token)."""
    try:
        host = exc.request.url.host or "?"
    except RuntimeError:  # an error raised without a request
        host = "?"
    reason = _os_reason(exc) or (str(exc) or type(exc).__name__)
    return f"{host}: {reason}"


def _os_reason(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    found: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "errno", None)
        if isinstance(code, int):
            text = (getattr(current, "strerror", None) or os.strerror(code)).lower()
            name = errno_names.errorcode.get(code, "DNS" if code < 0 else f"errno {code}")
            found = f"{text} ({name})"
        current = current.__cause__ or current.__context__
    return found
