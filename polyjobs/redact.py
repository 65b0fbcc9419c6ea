"""Secret redaction for anything that may reach a message, a log line or the terminal."""

from __future__ import annotations

import re

MASK = "***"
_WEBHOOK_RE = re.compile(r"(/api/webhooks/\d+/)[A-Za-z0-9_\-.]+")
_URL_PASSWORD_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@"
)
_QUERY_SECRET_RE = re.compile(r"(?i)([?&](?:password|passwd|token|secret)=)[^&\s#]*")


def redact_text(text: str) -> str:
    """Mask URL passwords (``redis://user:***@host``), webhook tokens and ``password=`` /
    ``token=`` query parameters wherever they appear in ``text``."""
    text = _URL_PASSWORD_RE.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
    text = _QUERY_SECRET_RE.sub(rf"\g<1>{MASK}", text)
    return _WEBHOOK_RE.sub(rf"\g<1>{MASK}", text)


def redact_url(url: str) -> str:
    """A URL fit to show: ``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``."""
    return redact_text(url)
