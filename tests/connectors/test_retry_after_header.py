"""Retry-After from a provider: delay-seconds only (RFC 9110 §10.2.3), never a crash."""

from __future__ import annotations

import httpx
import pytest

from authrelay.connectors.connector import TokenEndpointError, parse_token_response
from authrelay.tokens.endpoint import delay_seconds


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"7", 7),
        (b" 12 ", 12),
        (b"Wed, 21 Oct 2015 07:28:00 GMT", None),
        (b"1.5", None),
        (b"-3", None),
        ("\u00b2".encode(), None),  # "²": str.isdigit() is True, int() refuses it
        ("\u0663".encode(), None),  # Arabic-Indic three: not ASCII
        (b"", None),
    ],
)
def test_delay_seconds_takes_ascii_digits_only(header: bytes, expected: int | None) -> None:
    response = httpx.Response(503, headers=[(b"retry-after", header)])
    assert delay_seconds(response) == expected


def test_a_token_endpoint_503_with_a_look_alike_retry_after_is_a_server_error() -> None:
    response = httpx.Response(503, headers=[(b"retry-after", "\u00b2".encode())], content=b"")
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(response, "idp")
    assert (info.value.code, info.value.status, info.value.retry_after) == (
        "server_error",
        503,
        None,
    )


def test_a_token_endpoint_503_keeps_a_plain_retry_after() -> None:
    response = httpx.Response(503, headers=[(b"retry-after", b"4")], content=b"")
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(response, "idp")
    assert info.value.retry_after == 4
