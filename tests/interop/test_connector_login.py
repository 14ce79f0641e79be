"""Connector login, refresh and logout against the certified oidc-provider (node)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from joserfc.jwk import RSAKey
from oidc_harness import OidcProvider

sys.path.insert(0, str(Path(__file__).parent.parent / "connectors"))
from connector_helpers import run_app

from authrelay import Principal
from authrelay.testing import free_port

pytestmark = pytest.mark.interop


def _app(provider: OidcProvider, client: dict[str, Any] | None = None, **extra: Any) -> Any:
    connector = {
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "scopes": ["openid", "profile", "email", "offline_access"],
        "authorize_params": {"prompt": "consent"},
        **(client or {}),
    }
    return run_app(SimpleNamespace(issuer=provider.issuer), connector=connector, **extra)  # type: ignore[arg-type]


def _private_key_jwt_client(provider: OidcProvider) -> dict[str, Any]:
    """A client registered with only its public key; the connector settings that use it."""
    key = RSAKey.generate_key(2048, {"kid": "interop-connector", "alg": "RS256", "use": "sig"})
    client_id, _ = provider.register_client(
        ["http://127.0.0.1/auth/idp/callback"],
        ["http://127.0.0.1/"],
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_signing_alg="RS256",
        jwks={"keys": [key.as_dict(private=False)]},
    )
    return {
        "client_id": client_id,
        "client_secret": None,
        "token_endpoint_auth_method": "private_key_jwt",
        "private_key": key.as_pem(private=True).decode(),
        "private_key_id": "interop-connector",
    }


@pytest.mark.parametrize("auth", ["client_secret_basic", "private_key_jwt"])
def test_login_refresh_and_logout_with_oidc_provider(
    oidc_provider: OidcProvider, auth: str
) -> None:
    client = _private_key_jwt_client(oidc_provider) if auth == "private_key_jwt" else None
    with _app(oidc_provider, client) as app:
        callback = oidc_provider.login(
            f"{app.base}/auth/idp/login?next=/after", "alice", http=app.client
        )
        assert "iss=" in callback  # RFC 9207 from a provider that declares support
        done = app.client.get(callback)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/after"
        me = app.me()
        assert me["authenticated"] is True
        subject = me["subject"]
        assert subject.startswith("idp|")
        assert me["connectors"][0]["status"] == "active"
        principal = Principal(subject=subject, kind="session", connector="idp")
        source = app.relay.connectors.tokens
        first = app.relay.sync_driver.run(
            source.user_token(principal, "idp", (), force_refresh=False)
        )
        second = app.relay.sync_driver.run(
            source.user_token(principal, "idp", (), force_refresh=True)
        )
        assert first.value != second.value  # refreshed (with rotation) at the real provider
        out = app.client.post(
            f"{app.base}/auth/logout", headers={"origin": app.base, "accept": "application/json"}
        )
        assert out.status_code == 200
        assert out.json()["redirect"] == "/auth/logout/provider"  # then end_session_endpoint
        assert app.me()["authenticated"] is False


def test_tampered_iss_is_refused_with_oidc_provider(oidc_provider: OidcProvider) -> None:
    with _app(oidc_provider) as app:
        callback = oidc_provider.login(f"{app.base}/auth/idp/login", "alice", http=app.client)
        tampered = callback.replace("iss=", "iss=https%3A%2F%2Fevil.example&x=")
        response = app.client.get(tampered)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_issuer"
        assert app.me()["authenticated"] is False


def test_backchannel_logout_from_oidc_provider_ends_the_session(
    oidc_provider: OidcProvider,
) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}/auth/idp/backchannel-logout"
    client_id, client_secret = oidc_provider.register_client(
        ["http://127.0.0.1/auth/idp/callback"],
        ["http://127.0.0.1/"],
        backchannel_logout_uri=uri,
        backchannel_logout_session_required=True,
    )
    client = {"client_id": client_id, "client_secret": client_secret}
    with _app(oidc_provider, client, port=port) as app:
        callback = oidc_provider.login(f"{app.base}/auth/idp/login", "alice", http=app.client)
        assert app.client.get(callback).status_code == 303
        assert app.me()["authenticated"] is True
        # The user signs out at the provider itself (not through the app): the provider
        # POSTs a logout token to the app, which ends the session.
        oidc_provider.logout(oidc_provider.end_session_url(client_id=client_id), app.client)
        assert app.me()["authenticated"] is False
