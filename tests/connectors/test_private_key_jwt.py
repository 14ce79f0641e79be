"""Connectors authenticating with ``private_key_jwt`` (RFC 7523, AC-11) instead of a secret.

The provider registers only the connector's public key and refuses any other method, so a
sign-in, a refresh and a logout's revocation that succeed prove each request carried a
valid assertion (signature, ``iss`` = ``sub`` = client id, ``aud``, ``exp``, fresh
``jti``: the provider refuses a reused one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from connector_helpers import app_settings, jwt_payload, refresh_count, run_app
from joserfc.jwk import ECKey, RSAKey

from authrelay import ConfigurationError, Principal, Relay
from authrelay.testing import FakeClock, IdentityProvider, OAuthClient, serve_identity_provider

ALICE = Principal(subject="idp|alice", kind="session", connector="idp")
CALLBACKS = ("http://127.0.0.1/auth/idp/callback",)


def _provider(
    make_identity_provider: Callable[..., IdentityProvider], public_jwk: dict[str, Any], **kw: Any
) -> IdentityProvider:
    client = OAuthClient(
        "test-client",
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [public_jwk]},
        redirect_uris=CALLBACKS,
        loopback_any_port=True,
    )
    return make_identity_provider(clients=[client], **{"issuer": None, **kw})


def _connector(private_key: str, **extra: Any) -> dict[str, Any]:
    return {
        "client_secret": None,
        "token_endpoint_auth_method": "private_key_jwt",
        "private_key": private_key,
        **extra,
    }


def _assertion_of(relay: Relay, url: str) -> dict[str, Any]:
    connector = relay.connectors.get("idp")
    assert connector is not None
    request = connector.token_request(url, {"grant_type": "refresh_token"})
    form = dict(pair.split("=", 1) for pair in request.content.decode().split("&"))
    assert form["client_assertion_type"].endswith("jwt-bearer")
    assert "client_secret" not in form and "authorization" not in request.headers
    return jwt_payload(form["client_assertion"])


def test_ac11_sign_in_refresh_and_revocation_with_private_key_jwt(
    make_identity_provider: Callable[..., IdentityProvider], shell: str
) -> None:
    key = RSAKey.generate_key(2048, {"kid": "connector-key"})
    clock = FakeClock(1_700_000_000.0)
    idp = _provider(make_identity_provider, key.as_dict(private=False), clock=clock)
    pem = key.as_pem(private=True).decode()
    with (
        serve_identity_provider(idp),
        run_app(
            idp,
            wsgi=shell == "wsgi",
            clock=clock,
            connector=_connector(pem, private_key_id="connector-key"),
        ) as app,
    ):
        callback = app.login()
        assert callback.status_code in (302, 303), callback.text
        assert app.me()["subject"] == "idp|alice"
        tokens = app.relay.connectors.tokens
        first = app.relay.sync_driver.run(tokens.user_token(ALICE, "idp", (), force_refresh=False))
        clock.advance(250)  # inside the refresh margin: the next use refreshes
        second = app.relay.sync_driver.run(tokens.user_token(ALICE, "idp", (), force_refresh=False))
        assert second.value != first.value
        assert refresh_count(idp, 1) == 1
        refresh_tokens = idp.issued_refresh_tokens("alice")
        out = app.client.post(
            f"{app.base}/auth/logout", headers={"origin": app.base, "accept": "application/json"}
        )
        assert out.status_code == 200
    assert refresh_tokens and all(idp.is_revoked(rt) for rt in refresh_tokens)  # RV-01
    # Three authenticated calls (code, refresh, revocation), three distinct assertions:
    # the provider would have refused a reused jti.
    assert idp.counters.count(endpoint="token") == 2


def test_ac11_assertion_names_the_issuer_and_is_short_lived(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    key = ECKey.generate_key("P-256", {"kid": "ec-key"})
    idp = _provider(make_identity_provider, key.as_dict(private=False), issuer="https://idp.test")
    jwk_text = json.dumps(key.as_dict(private=True))
    settings = app_settings(idp.issuer, "http://127.0.0.1:1", connector=_connector(jwk_text))
    relay = Relay(settings)
    try:
        token_url = idp.issuer + "/token"
        first = _assertion_of(relay, token_url)
        second = _assertion_of(relay, token_url)
        assert first["aud"] == idp.issuer  # the issuer identifier, not the endpoint (AC-11)
        assert first["iss"] == first["sub"] == "test-client"
        assert 0 < first["exp"] - first["iat"] <= 300
        assert first["jti"] != second["jti"]
    finally:
        relay.close()


@pytest.mark.parametrize(
    ("connector", "expected"),
    [
        ({"preset": "microsoft", "tenant": "contoso.example"}, "token_endpoint"),
        ({"client_assertion_audience": "token_endpoint"}, "token_endpoint"),
        ({"preset": "microsoft", "client_assertion_audience": "issuer"}, "issuer"),
    ],
)
def test_ac11_assertion_audience_for_providers_that_want_the_endpoint(
    connector: dict[str, Any], expected: str
) -> None:
    key = RSAKey.generate_key(2048)
    extra = dict(connector)
    if "preset" in extra:
        extra.update({"standard": None, "issuer": None})
    settings = app_settings(
        "https://idp.example",
        "https://app.example",
        connector=_connector(key.as_pem(private=True).decode(), **extra),
    )
    relay = Relay(settings.model_copy(update={"dev_mode": True}))
    try:
        connector_object = relay.connectors.get("idp")
        assert connector_object is not None
        url = "https://login.example/oauth2/v2.0/token"
        audience = _assertion_of(relay, url)["aud"]
        assert audience == (url if expected == "token_endpoint" else connector_object.issuer)
    finally:
        relay.close()


def test_private_key_jwt_needs_a_private_key_and_says_which() -> None:
    without = {**_connector("unused"), "private_key": None}
    with pytest.raises(ConfigurationError, match="private_key: required with private_key_jwt"):
        app_settings("https://idp.example", "https://app.example", connector=without)
    public = RSAKey.generate_key(2048).as_pem(private=False).decode()
    with pytest.raises(ConfigurationError, match=r"connectors\.idp\.private_key") as info:
        Relay(
            app_settings("https://idp.example", "https://app.example", connector=_connector(public))
        )
    assert "BEGIN" not in str(info.value)
    with pytest.raises(ConfigurationError, match="not a PEM or JWK") as info:
        Relay(
            app_settings(
                "https://idp.example", "https://app.example", connector=_connector("pem-canary")
            )
        )
    assert "pem-canary" not in str(info.value)


def test_a_key_the_provider_does_not_know_fails_sign_in_cleanly(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    registered = RSAKey.generate_key(2048)
    other = RSAKey.generate_key(2048)
    idp = _provider(make_identity_provider, registered.as_dict(private=False))
    pem = other.as_pem(private=True).decode()
    with serve_identity_provider(idp), run_app(idp, connector=_connector(pem)) as app:
        callback = app.login()
        assert callback.status_code in (400, 401, 502), callback.text
        assert "BEGIN" not in callback.text and "Traceback" not in callback.text
        assert app.me()["authenticated"] is False
    assert idp.counters.count(endpoint="token") == 1


def test_private_key_survives_a_runtime_update_sealed() -> None:
    relay = Relay(app_settings("https://idp.example", "https://app.example"))
    run = relay.sync_driver.run
    pem = RSAKey.generate_key(2048).as_pem(private=True).decode()
    try:
        run(
            relay.connectors.update(
                "idp",
                {
                    "standard": "oidc",
                    "issuer": "https://idp.example",
                    "client_id": "x",
                    "token_endpoint_auth_method": "private_key_jwt",
                    "private_key": pem,
                },
            )
        )
        saved = run(relay.connectors.store.load_connector_records())
        assert saved["idp"]["config"]["private_key"] == pem  # kept, to start the connector again
        raw = relay.backend.get(relay.settings.store.key_prefix + "connector:idp")
        assert raw is not None and b"PRIVATE KEY" not in raw[0]  # sealed at rest
        assert "PRIVATE" not in repr(relay.connectors.settings_of("idp"))
    finally:
        relay.close()
