"""JSON on the wire, and only JSON: strict encoding with one clear error for what is not JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from polyjobs.errors import InvalidArgumentError

DEFAULT_MAX_PAYLOAD = 512 * 1024
#: ``json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``, without
#: building an encoder per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps_of(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, calling the C encoder that it makes for each value straight (the
    same encoder, errors and output, without ``iterencode``'s Python and closure per call);
    ``encoder.encode`` itself where the C encoder is missing."""
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return encoder.encode
    default, key_sep, item_sep = encoder.default, encoder.key_separator, encoder.item_separator
    allow_nan = encoder.allow_nan

    def dumps(value: Any) -> str:
        # a fresh ``markers`` dict per value, as ``iterencode`` makes: circular references are
        # found, and no value's failure is left behind for the next
        chunks = c_make_encoder(
            {}, default, encode_basestring, None, key_sep, item_sep, False, False, allow_nan
        )(value, 0)
        return "".join(chunks)

    return dumps


_dumps = _dumps_of(_ENCODER)


def encode(value: Any, what: str, max_bytes: int | None = None, of: str | None = None) -> str:
    """Encode ``value`` as compact JSON; reject NaN/Infinity, non-JSON types, text that is not
    valid Unicode (lone surrogates) and, with ``max_bytes``, more UTF-8 bytes than that. An
    error names the value ``what``, followed by ``of`` quoted when given (``data of job
    'name'``: the label is only made for an error)."""
    try:
        text = _dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{_label(what, of)} is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError(f"{_label(what, of)} is not JSON: nested too deeply") from None
    if text.isascii():  # a flag of the string, no copy: one byte per character
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                f"{_label(what, of)} holds text that is not valid Unicode"
            ) from None
    if max_bytes is not None and size > max_bytes:
        raise InvalidArgumentError(
            f"{_label(what, of)} is {size} bytes of JSON, over the limit of {max_bytes} bytes"
        )
    return text


def _label(what: str, of: str | None) -> str:
    return what if of is None else f"{what} {of!r}"


def decode(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)
