"""The JSON of jobs' data (``polyjobs.codec``): what ``json.dumps`` with the codec's settings
writes, and one clear error for what is not JSON, whatever was encoded before."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyjobs import codec
from polyjobs.errors import InvalidArgumentError

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)  # beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


def _reference(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@given(_VALUES)
def test_the_text_is_json_dumps_with_the_codecs_settings(value: Any) -> None:
    try:
        expected = _reference(value)
    except ValueError:  # e.g. a lone surrogate in a text: json writes it, the codec refuses
        return
    if any(0xD800 <= ord(c) <= 0xDFFF for c in expected):
        with pytest.raises(InvalidArgumentError, match="not valid Unicode"):
            codec.encode(value, "data")
        return
    assert codec.encode(value, "data") == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "Out of range float"),
        ({"a": [1, math.inf]}, "Out of range float"),
        ({"s": {1, 2}}, "Object of type set is not JSON serializable"),
        (object(), "Object of type object"),
    ],
)
def test_what_is_not_json_is_one_clear_error(value: Any, reason: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^data of job 'x' is not JSON: {reason}"):
        codec.encode(value, "data of job 'x'")


def test_a_failed_encoding_leaves_nothing_behind_for_the_next() -> None:
    shared: dict[str, Any] = {"k": [1, 2], "bad": {1}}
    # fails inside ``shared`` (its set): once the set is gone, ``shared`` encodes, twice in one
    # value, neither refused as circular nor changed
    with pytest.raises(InvalidArgumentError, match="set is not JSON serializable"):
        codec.encode({"a": shared}, "data")
    del shared["bad"]
    assert codec.encode({"a": shared, "again": shared}, "data") == (
        '{"a":{"k":[1,2]},"again":{"k":[1,2]}}'
    )
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidArgumentError, match="Circular reference detected"):
        codec.encode(loop, "data")


def test_the_size_limit_counts_utf8_bytes() -> None:
    assert codec.encode("é" * 4, "data", max_bytes=10) == '"éééé"'  # 8 + 2 bytes
    with pytest.raises(InvalidArgumentError, match="is 12 bytes of JSON, over the limit of 10"):
        codec.encode("é" * 5, "data", max_bytes=10)
