"""Tokens from a token endpoint must be usable as they are (RFC 6749 A.12, RFC 6750 §2.1).

An access token with CR/LF, another control character, a space or anything outside ASCII,
or an answer that repeats ``access_token``, is refused as an unusable answer (502) for
client credentials and for a refresh, under ASGI and WSGI; it never reaches a downstream
request and never gives a 500 (INV-2) nor shows up in an answer or a log (INV-1).
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_sec_json_bounds import EXAMPLES, Served, _answer, _callback, _serve

from authrelay.testing import IdentityProvider

_GOOD = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)
_BAD = st.one_of(
    st.sampled_from(["\r", "\n", "\r\n", " ", "\t", "\x00", "\x7f"]),
    st.characters(min_codepoint=0x80, exclude_categories=("Cs",)),
    st.characters(max_codepoint=0x1F),
)
UNUSABLE = st.builds(lambda a, bad, b: a + bad + b, _GOOD, _BAD, _GOOD)


def _token_answer(token: str, *, refresh: str | None = None) -> bytes:
    body = {"access_token": token, "token_type": "Bearer", "expires_in": 300}
    if refresh is not None:
        body["refresh_token"] = refresh
    return json.dumps(body).encode()


def _rewrite(served: Served, grant: bytes, body: bytes) -> None:
    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if grant in request.content:
            return _answer(body)
        return response

    served.recorder.rewrite = rewrite


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_client_credentials_unusable_access_token_is_502(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(token=UNUSABLE)
        @example(token="abc\r\nX-Injected: 1")
        @example(token="t\u00f6ken")
        def run(token: str) -> None:
            served.secrets.add(token)
            _rewrite(served, b"grant_type=client_credentials", _token_answer(token))
            answer = served.client.get(f"{served.base}/call/billing")
            served.check(answer, (502,))
            assert answer.json()["error"] == "upstream_token_error"

        run()


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_repeated_access_token_member_is_502(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"access_token":"A-first","token_type":"Bearer","access_token":"B-second"}'
    with _serve(idp, shell, caplog) as served:
        _rewrite(served, b"grant_type=client_credentials", body)
        served.check(served.client.get(f"{served.base}/call/billing"), (502,))


def _signed_in(served: Served) -> None:
    served.recorder.rewrite = None
    served.clock.offset = 0  # the provider's ID tokens are minted on the real clock
    answer = _callback(served)
    assert answer.status_code in (200, 302, 303), answer.text


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_refresh_unusable_access_token_is_502(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(token=UNUSABLE)
        @example(token="abc\r\nX-Injected: 1")
        @example(token="t\u00f6ken")
        def run(token: str) -> None:
            served.secrets.add(token)
            _signed_in(served)
            served.clock.offset += 400  # the access token (300 s) has expired: refresh
            _rewrite(served, b"grant_type=refresh_token", _token_answer(token, refresh="r-2"))
            answer = served.client.get(f"{served.base}/call/mine")
            served.check(answer, (502,))
            assert served.recorder.token_requests("refresh_token")

        run()
