"""The one JSON parser for data from outside: bounded in size and depth, strict in form.

Every JSON document authrelay did not write itself (JWT headers and claims, token-endpoint,
introspection, JWKS, discovery and user-info answers) is parsed by :func:`parse_object`:

- at most ``max_bytes`` bytes and ``max_depth`` nested arrays/objects, so a hostile
  document can neither exhaust memory nor the interpreter's recursion limit (a deeply
  nested document would otherwise raise ``RecursionError``, which no caller expects);
- duplicate member names are refused (RFC 8259 §4 leaves them undefined; RFC 7515 §5.2
  and RFC 7519 §4 allow rejecting them), so two readers can never see different values;
- ``NaN`` and ``Infinity`` are refused (they are not JSON);
- the top level must be an object.

Every failure is a :class:`JsonError` (a ``ValueError``) whose ``reason`` names the rule;
callers map it to their own typed error (``invalid_token`` for a bearer, an upstream error
for an identity-provider answer). The message never repeats the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "JsonError", "parse_object", "parse_value"]

MAX_DEPTH = 32
"""Nesting allowed by default: JOSE headers, claims and IdP answers need a handful."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonError(ValueError):
    """A document from outside is not acceptable JSON; ``reason`` says which rule failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"unacceptable JSON ({reason})")
        self.reason = reason


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JsonError("duplicate_member")
    return result


def _no_constants(name: str) -> Any:
    raise JsonError("malformed")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
_SCAN: Callable[[str, int], tuple[Any, int]] = getattr(_DECODER, "scan_once")  # noqa: B009


def _depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (exact for valid JSON)."""
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def parse_object(
    raw: bytes | str, *, max_bytes: int = 512 * 1024, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """Parse one JSON object from outside within the limits; raise :class:`JsonError`."""
    value = parse_value(raw, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(value, dict):
        raise JsonError("not_object")
    return value


def parse_value(raw: bytes | str, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Like :func:`parse_object`, for any JSON value at the top (a downstream answer)."""
    if len(raw) > max_bytes:
        raise JsonError("too_large")
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonError("malformed") from None
    else:
        text = raw
    # Counting brackets is cheap; only a document with many of them needs the exact scan.
    if (text.count("[") + text.count("{") > max_depth) and _depth(text) > max_depth:
        raise JsonError("too_deep")
    try:
        try:
            # the C scanner alone; anything unusual (whitespace around, errors) takes decode()
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = _DECODER.decode(text)
    except JsonError:
        raise
    except RecursionError:  # cannot happen within max_depth; never let it escape
        raise JsonError("too_deep") from None
    except ValueError:
        raise JsonError("malformed") from None
    return value
