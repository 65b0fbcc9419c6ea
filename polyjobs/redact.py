"""Secret redaction for anything that may reach a message, a log line, a page or the terminal.

One place decides what is a secret, for the CLI, the logs, the board and its API:

- :func:`redact_text` masks secrets inside any text: URL passwords (``redis://user:***@host``,
  a password holding a raw ``@`` included), webhook tokens (``/api/webhooks/<id>/***``, also
  ``/api/v10/webhooks/...``), ``password=`` / ``token=`` / ``access_token=`` / ``api_key=`` /
  ``secret=`` parameters and ``Bearer`` tokens.
- :func:`redact_value` does that to every string of a JSON-like value and masks the whole value
  of every key that names a secret (:func:`is_secret_key`: ``password``, ``api_key``,
  ``accessToken``, ``webhook_url``... but not ``max_tokens`` or ``secretary``).

Every scan is linear in the length of its input: no pattern here can backtrack over a long run
of letters or digits (the URL scan starts at each ``://`` and never reads a character twice).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

MASK = "***"

# The path of a webhook, up to its token (Discord: /api/webhooks/<id>/<token>, and the
# versioned /api/v10/webhooks/<id>/<token>). Starts at a fixed literal: linear.
_WEBHOOK_RE = re.compile(r"(/api/(?:v\d{1,4}/)?webhooks/\d{1,40}/)[A-Za-z0-9_\-.]+")
# ``name=value`` where the name is a secret, in a query string or anywhere in text. The name must
# start a word (``max_token=`` and ``tokens=`` are left alone; ``access_token=`` is masked).
# Alternatives are fixed words, so each position is tried in bounded time: linear (the leading
# one-character lookahead lets most positions fail at once: 30 ms a megabyte instead of 1 s).
_PARAM_RE = re.compile(
    r"(?i)(?=[aciprstx])(?<![A-Za-z0-9_\-])("
    r"(?:(?:access|refresh|auth|id|session|csrf|api|client|app|private|secret|x)[_-]?)?"
    r"(?:password|passwd|pwd|passphrase|token|secret|api[_-]?key|apikey|private[_-]?key"
    r"|access[_-]?key|signature|sig)"
    r")( ?= ?)([^&\s#,;\"'<>]+)"
)
# ``Bearer <token>``. "Bearer tokens are..." is prose: a credential is 16 characters or more, or
# holds a digit or a symbol (checked by a bounded lookahead: linear).
_TOKEN_CHARS = r"[A-Za-z0-9._~+/\-]"
_BEARER_RE = re.compile(
    r"(?=[Bb])(?<![A-Za-z0-9_])(Bearer|bearer|BEARER)([ \t]{1,8})"
    rf"(?={_TOKEN_CHARS}{{0,15}}[0-9._~+/=\-]|{_TOKEN_CHARS}{{16}}){_TOKEN_CHARS}+=*"
)
# ``scheme://user:password@`` : the password runs from the first ``:`` of the user info to the
# last ``@`` of the authority, as URL parsers read it (``redis://:Wr@ngAtPW@host``). A match can
# only start right after ``://`` (a fixed-width lookbehind), and each authority is scanned once:
# linear (the old pattern tried a scheme at every letter and scanned the rest of the run).
_URL_PASSWORD_RE = re.compile(r"(?<=[A-Za-z0-9+.\-]://)([^:@/\\\s\"'<>`]*):([^/\\\s\"'<>`]*)@")

# Words of a key that name a secret, and pairs of words that do (``api_key``, ``private_key``).
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwords",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "apikey",
        "authorization",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "webhook",
        "dsn",
    }
)
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("access", "key"),
        ("secret", "key"),
        ("signing", "key"),
        ("session", "id"),
    }
)
# A key whose last word is one of these describes a secret without holding it
# (``token_count``, ``password_length``, ``token_type``).
_NOT_A_SECRET_LAST = frozenset(
    {"count", "counts", "limit", "length", "len", "size", "type", "usage", "budget", "hint"}
)
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_KEY_MAX = 200


def key_words(key: str) -> list[str]:
    """A key split into lower-case words: ``accessToken`` / ``ACCESS_TOKEN`` / ``access-token``
    -> ``["access", "token"]``."""
    return [w.lower() for w in _WORD_RE.findall(key[:_KEY_MAX])]


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret, so that its whole value must be masked:
    ``password``, ``db_passwd``, ``token``, ``accessToken``, ``api_key``, ``apiKey``,
    ``client_secret``, ``Authorization``, ``webhook_url``... and not ``max_tokens``,
    ``secretary``, ``token_count`` or ``keyboard``."""
    words = key_words(str(key))
    if not words or words[-1] in _NOT_A_SECRET_LAST:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in pairwise(words))


def redact_text(text: str) -> str:
    """``text`` with every secret in it masked: URL passwords, webhook tokens, secret
    parameters (``password=``, ``token=``, ``access_token=``, ``api_key=``...) and ``Bearer``
    tokens. Linear in ``len(text)``."""
    if "://" in text:
        text = _URL_PASSWORD_RE.sub(rf"\g<1>:{MASK}@", text)
    if "=" in text:
        text = _PARAM_RE.sub(rf"\g<1>\g<2>{MASK}", text)
    if "earer" in text or "EARER" in text:
        text = _BEARER_RE.sub(rf"\g<1>\g<2>{MASK}", text)
    if "webhooks/" in text:
        text = _WEBHOOK_RE.sub(rf"\g<1>{MASK}", text)
    return text


def redact_url(url: str) -> str:
    """A URL fit to show: ``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``."""
    return redact_text(url)


def redact_value(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings...) with every string in it, keys too, passed
    through :func:`redact_text`, and the value of every key that names a secret
    (:func:`is_secret_key`) replaced by ``***``. Dict keys keep their order."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            (redact_text(k) if isinstance(k, str) else k): (
                MASK if is_secret_key(k) and v not in (None, "") else redact_value(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
