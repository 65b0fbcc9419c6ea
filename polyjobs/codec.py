"""JSON on the wire, and only JSON: strict encoding with one clear error for what is not JSON."""

from __future__ import annotations

import json
from typing import Any

from polyjobs.errors import InvalidArgumentError

DEFAULT_MAX_PAYLOAD = 512 * 1024
#: ``json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``, without
#: building an encoder per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(value: Any, what: str, max_bytes: int | None = None) -> str:
    """Encode ``value`` as compact JSON; reject NaN/Infinity, non-JSON types, text that is not
    valid Unicode (lone surrogates) and, with ``max_bytes``, more UTF-8 bytes than that."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError(f"{what} is not JSON: nested too deeply") from None
    if text.isascii():  # a flag of the string, no copy: one byte per character
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidArgumentError(f"{what} holds text that is not valid Unicode") from None
    if max_bytes is not None and size > max_bytes:
        raise InvalidArgumentError(
            f"{what} is {size} bytes of JSON, over the limit of {max_bytes} bytes"
        )
    return text


def decode(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)
