"""Secret redaction for anything that may reach a message, a log line or the terminal."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_WEBHOOK_RE = re.compile(r"(/api/webhooks/\d+/)[A-Za-z0-9_\-.]+")
_URL_PASSWORD_RE = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)
MASK = "***"


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``; also masks
    webhook tokens and ``password=``/``token=`` query parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        user = creds.split(":", 1)[0] if ":" in creds else ""
        netloc = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
    query = re.sub(r"(?i)((?:password|passwd|token|secret)=)[^&]*", rf"\g<1>{MASK}", parts.query)
    path = _WEBHOOK_RE.sub(rf"\g<1>{MASK}", parts.path)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Mask URL passwords and webhook tokens wherever they appear in free text."""
    text = _URL_PASSWORD_RE.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
    return _WEBHOOK_RE.sub(rf"\g<1>{MASK}", text)
