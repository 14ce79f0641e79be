"""A standard ``oauth2`` connector at a provider that sends RFC 9207 ``iss``: without a
configured ``issuer`` the callback says which setting to add and what was received; with
it, the sign-in works (MU-02)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from connector_helpers import query_of, run_app

from authrelay.testing import IdentityProvider


def _oauth2(idp: IdentityProvider, **extra: Any) -> dict[str, Any]:
    return {
        "idp": {
            "standard": "oauth2",
            "authorization_endpoint": f"{idp.issuer}/authorize",
            "token_endpoint": f"{idp.issuer}/token",
            "userinfo_endpoint": f"{idp.issuer}/userinfo",
            "client_id": "test-client",
            "client_secret": "test-secret",
            "scopes": ["openid", "profile", "email"],
            **extra,
        }
    }


def test_mu02_rfc9207_iss_without_configured_issuer_names_the_setting(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authrelay")
    with run_app(idp, wsgi=shell == "wsgi", connectors=_oauth2(idp)) as app:
        callback = app.authorize("/auth/idp/login")
        assert "iss=" in callback
        answer = app.client.get(callback, headers={"accept": "application/json"})
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert body["error"] == "invalid_issuer"
        assert "connectors.idp.issuer" in body["error_description"]
        assert repr(idp.issuer) in body["error_description"]
        assert app.me()["authenticated"] is False
        html = app.client.get(app.authorize("/auth/idp/login"), headers={"accept": "text/html"})
        assert html.status_code == 400
        assert "connectors.idp.issuer" in html.text
    assert idp.counters.count(endpoint="token") == 0
    assert any(
        "callback_iss_unconfigured" in r.getMessage() and idp.issuer in r.getMessage()
        for r in caplog.records
    )


def test_mu02_rfc9207_iss_with_the_configured_issuer_signs_in(
    idp: IdentityProvider, shell: str
) -> None:
    connectors = _oauth2(idp, issuer=idp.issuer)
    with run_app(idp, wsgi=shell == "wsgi", connectors=connectors) as app:
        done = app.login(connector="idp")
        assert done.status_code == 303, done.text
        assert app.me()["authenticated"] is True


def test_mu02_rfc9207_iss_of_another_issuer_is_still_refused(idp: IdentityProvider) -> None:
    connectors = _oauth2(idp, issuer="https://other.example")
    with run_app(idp, connectors=connectors) as app:
        answer = app.client.get(
            app.authorize("/auth/idp/login"), headers={"accept": "application/json"}
        )
        assert answer.json()["error"] == "invalid_issuer"
        assert "connectors.idp.issuer" not in answer.json()["error_description"]


def test_mu02_received_iss_is_shown_escaped_and_bounded(idp: IdentityProvider) -> None:
    with run_app(idp, connectors=_oauth2(idp)) as app:
        params = query_of(app.authorize("/auth/idp/login"))
        params["iss"] = "<b>x</b>" + "y" * 500
        page = app.client.get(
            f"{app.base}/auth/idp/callback", params=params, headers={"accept": "text/html"}
        )
        assert page.status_code == 400
        assert "&lt;b&gt;x&lt;/b&gt;" in page.text and "<b>x" not in page.text
        assert "y" * 201 not in page.text
        params = query_of(app.authorize("/auth/idp/login"))
        params["iss"] = "https://idp.example\x00"
        answer = app.client.get(
            f"{app.base}/auth/idp/callback", params=params, headers={"accept": "application/json"}
        )
        assert answer.json()["error"] == "invalid_issuer"
        assert "(not printable)" in answer.json()["error_description"]
