"""oidc-provider in a second configuration (resource indicators with a default resource:
code-flow access tokens are JWTs for an API, and UserInfo refuses them): sign-in still
completes from the validated ID token. RP-initiated logout with ``id_token_hint`` and a
browser-bound ``state`` against the certified provider."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from oidc_harness import OidcProvider

sys.path.insert(0, str(Path(__file__).parent.parent / "connectors"))
from connector_helpers import jwt_payload, run_app

from authrelay.testing import free_port

pytestmark = pytest.mark.interop


def _app(provider: OidcProvider, client: dict[str, Any] | None = None, **extra: Any) -> Any:
    connector = {
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "scopes": ["openid", "profile", "email"],
        "authorize_params": {"prompt": "consent"},
        **(client or {}),
    }
    return run_app(SimpleNamespace(issuer=provider.issuer), connector=connector, **extra)  # type: ignore[arg-type]


def _userinfo(provider: OidcProvider, access_token: str) -> httpx.Response:
    return provider.http.get(
        provider.discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
    )


def test_the_two_profiles_differ_only_in_the_default_resource(
    oidc_provider: OidcProvider, oidc_resource_server_provider: OidcProvider
) -> None:
    scope = "openid profile email"
    plain = oidc_provider.authorization_code_tokens(scope=scope, resource=None)  # type: ignore[arg-type]
    assert _userinfo(oidc_provider, plain["access_token"]).status_code == 200
    provider = oidc_resource_server_provider
    request = provider.authorization_request(scope=scope, resource=None)
    tokens = provider.redeem_code(provider.login(request.url), request)
    assert jwt_payload(tokens["access_token"])["aud"] == "api://orders"  # RFC 9068 JWT
    assert jwt_payload(tokens["id_token"])["email"] == "alice@example.test"
    assert _userinfo(provider, tokens["access_token"]).status_code in (400, 401)


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_id10_sign_in_completes_when_userinfo_refuses_the_api_token(
    oidc_resource_server_provider: OidcProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider = oidc_resource_server_provider
    caplog.set_level(logging.WARNING, logger="authrelay")
    with _app(provider, wsgi=shell == "wsgi") as app:
        callback = provider.login(f"{app.base}/auth/idp/login?next=/after", "alice", app.client)
        done = app.client.get(callback)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/after"
        me = app.me()
        assert me["authenticated"] is True
        assert me["subject"] == "idp|alice"
        assert me["profile"]["name"] == "Alice"
        assert me["profile"]["email"] == "alice@example.test"
    warnings = [r.getMessage() for r in caplog.records if "userinfo_unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "connector=idp" in warnings[0] and "eyJ" not in warnings[0]


def test_userinfo_required_fails_the_sign_in_with_the_api_token(
    oidc_resource_server_provider: OidcProvider,
) -> None:
    provider = oidc_resource_server_provider
    with _app(provider, {"fetch_userinfo": "required"}) as app:
        callback = provider.login(f"{app.base}/auth/idp/login", "alice", app.client)
        done = app.client.get(callback, headers={"accept": "application/json"})
        assert done.status_code == 502
        assert "user-info endpoint refused" in done.json()["error_description"]
        assert app.me()["authenticated"] is False


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_se06_rp_initiated_logout_with_id_token_hint_and_state(
    oidc_provider: OidcProvider, shell: str
) -> None:
    port = free_port()
    back = f"http://127.0.0.1:{port}/auth/logout/callback"
    client_id, client_secret = oidc_provider.register_client(
        ["http://127.0.0.1/auth/idp/callback"], [back]
    )
    client = {"client_id": client_id, "client_secret": client_secret}
    with _app(oidc_provider, client, port=port, wsgi=shell == "wsgi") as app:
        callback = oidc_provider.login(f"{app.base}/auth/idp/login", "alice", app.client)
        assert app.client.get(callback).status_code == 303
        out = app.client.post(
            f"{app.base}/auth/logout", headers={"origin": app.base, "accept": "application/json"}
        )
        assert out.json()["redirect"] == "/auth/logout/provider"
        assert app.me()["authenticated"] is False
        # The page posts id_token_hint, client_id, post_logout_redirect_uri and state; the
        # provider checks the hint, asks for confirmation and returns with the state.
        returned = oidc_provider.logout(f"{app.base}/auth/logout/provider", app.client)
        assert returned.startswith(back + "?")
        state = parse_qs(urlsplit(returned).query)["state"][0]
        assert len(state) >= 43
        done = app.client.get(returned)
        assert done.status_code == 303
        assert done.headers["location"] == "/"
        # A forged return (another state) is not trusted.
        forged = app.client.get(
            back, params={"state": "x" * 43}, headers={"accept": "application/json"}
        )
        assert forged.status_code == 400
        assert forged.json()["error"] == "invalid_state"
