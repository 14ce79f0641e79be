"""Callback parameters (RFC 6749 §3.1, §4.1.2, Appendix A; AC-04): a repeated ``state``,
``iss``, ``code`` or ``error``, or a ``code`` beside an ``error``, is ``invalid_request``
before anything else is looked at; a ``code`` outside VSCHAR never reaches the token
endpoint; a browser that does not own a ``state`` cannot consume it."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest
from sec_helpers import App, base_settings, oidc_connector, query_of, serve_app

from authrelay import Settings
from authrelay.testing import IdentityProvider

JSON = {"accept": "application/json"}


def _settings(idp: IdentityProvider) -> Callable[[str], Settings]:
    return lambda base: base_settings(base, {"idp": oidc_connector(idp.issuer)})


def _callback(app: App, pairs: list[tuple[str, str]]) -> httpx.Response:
    return app.client.get(f"{app.base}/auth/idp/callback?{urlencode(pairs)}", headers=JSON)


def _finishes(app: App, callback: str) -> None:
    """The untouched transaction still signs its owner in."""
    done = app.client.get(callback, headers=JSON)
    assert done.status_code == 303, done.text
    assert app.me()["authenticated"] is True


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([("state", "second-state")], id="ac04-repeated-state"),
        pytest.param([("iss", "https://evil.example")], id="mu02-repeated-iss"),
        pytest.param([("code", "another-code")], id="ac08-repeated-code"),
        pytest.param([("error", "access_denied")], id="ac04-code-with-error"),
    ],
)
def test_ac04_polluted_callback_is_invalid_request_and_touches_nothing(
    idp: IdentityProvider, shell: str, extra: list[tuple[str, str]]
) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        callback = app.authorize()
        params = list(query_of(callback).items())
        answer = _callback(app, params + extra)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
        assert answer.headers["cache-control"] == "no-store"
        assert app.recorder.token_requests() == []
        assert app.me()["authenticated"] is False
        # Nothing was looked at: the transaction and its cookie are still there.
        assert not any("Max-Age=0" in c for c in answer.headers.get_list("set-cookie"))
        _finishes(app, callback)
    assert idp.counters.count(endpoint="token", grant_type="authorization_code") == 1


def test_ac04_repeated_state_is_refused_even_with_a_valid_first_value(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        callback = app.authorize()
        params = query_of(callback)
        pairs = [("state", params["state"]), *params.items()]
        answer = _callback(app, pairs)
        assert answer.json()["error"] == "invalid_request"
        assert "state" in answer.json()["error_description"]
        assert app.recorder.token_requests() == []


@pytest.mark.parametrize(
    "bad_code",
    [
        pytest.param("abc\x00def", id="nul"),
        pytest.param("abc\r\ndef", id="crlf"),
        pytest.param("abc\x7fdef", id="del"),
        pytest.param("abc\tdef", id="tab"),
        pytest.param("code-\u00e9", id="non-ascii"),
    ],
)
def test_ac08_code_outside_vschar_never_reaches_the_token_endpoint(
    idp: IdentityProvider, shell: str, bad_code: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        callback = app.authorize()
        params = query_of(callback)
        params["code"] = bad_code
        answer = _callback(app, list(params.items()))
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
        assert app.recorder.token_requests() == []
        assert app.me()["authenticated"] is False
        _finishes(app, callback)


def test_ac04_foreign_browser_does_not_consume_the_owners_state(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        callback = app.authorize()
        # Another browser, without the owner's transaction cookie, then with a forged one.
        name = next(c for c in app.client.cookies if c.endswith("-tx"))
        for cookies in ({}, {name: "forged-binding-value"}):
            with httpx.Client(cookies=cookies) as other:
                answer = other.get(callback, headers=JSON)
            assert answer.status_code == 400
            assert answer.json()["error"] == "invalid_state"
            assert "not started in this browser" in answer.json()["error_description"]
        assert app.recorder.token_requests() == []
        _finishes(app, callback)
        # ...and the state is single-use once its owner has used it.
        again = app.client.get(callback, headers=JSON)
        assert again.json()["error"] == "invalid_state"
    assert idp.counters.count(endpoint="token", grant_type="authorization_code") == 1


def test_inv2_callback_with_too_many_parameters_is_invalid_request(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        callback = app.authorize()
        pairs = list(query_of(callback).items()) + [(f"p{i}", "x") for i in range(70)]
        answer = _callback(app, pairs)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
        many = "&".join(f"p{i}=x" for i in range(70))
        for path in ("/auth/idp/login", "/auth/logout/callback", "/auth/connectors"):
            other = app.client.get(f"{app.base}{path}?{many}", headers=JSON)
            assert other.status_code == 400, (path, other.text)
        _finishes(app, callback)
