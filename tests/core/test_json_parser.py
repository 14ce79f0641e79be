"""The bounded JSON parser (authrelay._json): exact depth, size cap, repeated members."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authrelay._json import MAX_DEPTH, JsonError, parse_object

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=100, deadline=None)
@given(document=st.dictionaries(st.text(max_size=6), _VALUES, max_size=5), limit=st.integers(1, 8))
def test_depth_limit_is_exact_and_brackets_in_strings_do_not_count(
    document: dict[str, Any], limit: int
) -> None:
    document["s"] = "[[[{{{"  # brackets inside strings are not nesting
    text = json.dumps(document)
    if _depth(document) <= limit:
        assert parse_object(text, max_depth=limit) == json.loads(text)
    else:
        with pytest.raises(JsonError) as caught:
            parse_object(text, max_depth=limit)
        assert caught.value.reason == "too_deep"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 100_000])
def test_any_depth_is_a_json_error_never_recursion(depth: int) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # even where the interpreter gives way early
    try:
        with pytest.raises(JsonError) as caught:
            parse_object('{"a":' + "[" * depth + "]" * depth + "}", max_bytes=10**6)
    finally:
        sys.setrecursionlimit(limit)
    assert caught.value.reason == "too_deep"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a":1,"a":2}', "duplicate_member"),
        (b'{"x":{"a":1,"a":1}}', "duplicate_member"),
        (b'{"a":NaN}', "malformed"),
        (b'{"a":-Infinity}', "malformed"),
        (b"[1]", "not_object"),
        (b"\xff{}", "malformed"),
        (b'{"a":1} x', "malformed"),
        (b'{"a":"' + b"x" * 100 + b'"}', "too_large"),
    ],
)
def test_refusals_name_their_rule(raw: bytes, reason: str) -> None:
    with pytest.raises(JsonError) as caught:
        parse_object(raw, max_bytes=64)
    assert caught.value.reason == reason
    assert raw.decode("latin-1") not in str(caught.value)  # never repeats the document
