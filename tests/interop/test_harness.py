"""The interop harness itself works against the certified oidc-provider.

These tests prove the fixtures other interop tests build on: if one fails, authrelay's
interop failures would mean nothing.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, KeySetSerialization, RSAKey
from joserfc.jwt import JWTClaimsRegistry
from oidc_harness import OidcProvider, OidcProviderError

pytestmark = pytest.mark.interop


def _verify(provider: OidcProvider, token: str, audience: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(cast(KeySetSerialization, provider.jwks()))
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
    )
    registry.validate(decoded.claims)
    return {"header": decoded.header, **decoded.claims}


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_discovery_names_the_endpoints(oidc_provider: OidcProvider) -> None:
    discovery = oidc_provider.discovery
    assert discovery["issuer"] == oidc_provider.issuer
    for endpoint in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
        "registration_endpoint",
    ):
        assert discovery[endpoint].startswith(oidc_provider.issuer + "/"), endpoint
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["authorization_response_iss_parameter_supported"] is True
    assert discovery["response_types_supported"] == ["code"]


def test_client_credentials_jwt_verifies_against_the_jwks(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.client_credentials_token("api://orders", "orders.read")
    claims = _verify(oidc_provider, token, "api://orders")
    assert claims["header"]["alg"] == "RS256"
    assert claims["header"]["typ"] == "at+jwt"  # RFC 9068 §2.1
    assert claims["aud"] == "api://orders"
    assert claims["client_id"] == oidc_provider.api_client_id
    assert claims["scope"] == "orders.read"
    assert claims["exp"] - claims["iat"] == 300


def test_notes_resource_gets_its_own_audience(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.client_credentials_token(
        "https://notes.local", "notes.write", client=oidc_provider.rp_client
    )
    claims = _verify(oidc_provider, token, "https://notes.local")
    assert claims["client_id"] == oidc_provider.client_id
    assert claims["scope"] == "notes.write"


def test_client_credentials_jwt_fails_under_a_foreign_key(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.client_credentials_token()
    foreign = RSAKey.generate_key(2048)
    with pytest.raises(BadSignatureError):
        jwt.decode(token, foreign, algorithms=["RS256"])


def test_unknown_resource_is_refused(oidc_provider: OidcProvider) -> None:
    with pytest.raises(OidcProviderError, match="invalid_target"):
        oidc_provider.client_credentials_token("api://unknown", "orders.read")


def test_code_flow_returns_jwt_access_refresh_and_id_tokens(oidc_provider: OidcProvider) -> None:
    tokens = oidc_provider.authorization_code_tokens(username="alice")
    access = _verify(oidc_provider, tokens["access_token"], "api://orders")
    assert access["sub"] == "alice"
    assert access["scope"] == "orders.read"
    assert access["client_id"] == oidc_provider.client_id
    assert tokens["refresh_token"]
    identity = _verify(oidc_provider, tokens["id_token"], oidc_provider.client_id)
    assert identity["sub"] == "alice"
    assert identity["name"] == "Alice"
    assert identity["email"] == "alice@example.test"
    assert identity["email_verified"] is True


def test_login_returns_the_callback_on_any_loopback_port(oidc_provider: OidcProvider) -> None:
    redirect_uri = "http://127.0.0.1:39123/auth/op/callback"
    request = oidc_provider.authorization_request(redirect_uri=redirect_uri)
    callback = oidc_provider.login(request.url, username="bob")
    assert callback.split("?")[0] == redirect_uri
    query = _query(callback)
    assert query["state"] == request.state
    assert query["iss"] == oidc_provider.issuer
    tokens = oidc_provider.redeem_code(callback, request)
    identity = _verify(oidc_provider, tokens["id_token"], oidc_provider.client_id)
    assert identity["sub"] == "bob"
    assert identity["nonce"] == request.nonce


def test_ac_pkce_is_required(oidc_provider: OidcProvider) -> None:
    request = oidc_provider.authorization_request(code_challenge="", code_challenge_method="")
    callback = oidc_provider.login(request.url)
    assert _query(callback)["error"] == "invalid_request"


def test_unregistered_redirect_uri_is_refused(oidc_provider: OidcProvider) -> None:
    request = oidc_provider.authorization_request(redirect_uri="http://127.0.0.1:8000/elsewhere")
    with pytest.raises(OidcProviderError, match="redirect_uri"):
        oidc_provider.login(request.url)


def test_rt_refresh_rotates_and_the_old_token_dies(oidc_provider: OidcProvider) -> None:
    first = oidc_provider.authorization_code_tokens()
    second = oidc_provider.refresh(first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    claims = _verify(oidc_provider, second["access_token"], "api://orders")
    assert claims["sub"] == "alice"
    with pytest.raises(OidcProviderError, match="invalid_grant"):
        oidc_provider.refresh(first["refresh_token"])


def test_in_introspection_answers_active_and_inactive(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.client_credentials_token("api://inventory", "inventory.read")
    active = oidc_provider.introspect(token)
    assert active["active"] is True
    assert active["aud"] == "api://inventory"
    assert active["client_id"] == oidc_provider.api_client_id
    assert active["scope"] == "inventory.read"
    assert oidc_provider.introspect("not-a-token") == {"active": False}


def test_in_refresh_token_introspects_with_its_hint(oidc_provider: OidcProvider) -> None:
    tokens = oidc_provider.authorization_code_tokens(username="carol")
    answer = oidc_provider.introspect(tokens["refresh_token"], token_type_hint="refresh_token")
    assert answer["active"] is True
    assert answer["sub"] == "carol"
    assert answer["client_id"] == oidc_provider.client_id


def test_jwt_access_tokens_are_not_introspectable(oidc_provider: OidcProvider) -> None:
    # A limitation of oidc-provider that interop tests of introspection must work around.
    with pytest.raises(OidcProviderError, match="unsupported_token_type"):
        oidc_provider.introspect(oidc_provider.client_credentials_token())


def test_rv_revocation_ends_access_and_refresh_tokens(oidc_provider: OidcProvider) -> None:
    tokens = oidc_provider.authorization_code_tokens(
        scope="openid inventory.read", resource="api://inventory"
    )
    assert oidc_provider.introspect(tokens["access_token"])["active"] is True
    oidc_provider.revoke(tokens["access_token"], token_type_hint="access_token")
    assert oidc_provider.introspect(tokens["access_token"])["active"] is False
    oidc_provider.revoke(tokens["refresh_token"], token_type_hint="refresh_token")
    with pytest.raises(OidcProviderError, match="invalid_grant"):
        oidc_provider.refresh(tokens["refresh_token"])


def test_registered_client_completes_a_code_flow(oidc_provider: OidcProvider) -> None:
    client = oidc_provider.register_client(["http://127.0.0.1/auth/other/callback"])
    request = oidc_provider.authorization_request(
        client_id=client[0], redirect_uri="http://127.0.0.1:40001/auth/other/callback"
    )
    tokens = oidc_provider.redeem_code(oidc_provider.login(request.url), request, client=client)
    assert _verify(oidc_provider, tokens["access_token"], "api://orders")["client_id"] == client[0]


def test_rp_initiated_logout_ends_the_provider_session(oidc_provider: OidcProvider) -> None:
    def asks_for_login(browser: httpx.Client) -> bool:
        page = browser.get(oidc_provider.authorization_request().url, follow_redirects=True)
        return 'name="login"' in page.text

    with httpx.Client(timeout=10.0) as browser:
        request = oidc_provider.authorization_request()
        tokens = oidc_provider.redeem_code(oidc_provider.login(request.url, http=browser), request)
        assert not asks_for_login(browser)

        after = oidc_provider.logout(
            oidc_provider.end_session_url(
                id_token_hint=tokens["id_token"],
                post_logout_redirect_uri="http://127.0.0.1:39124/",
                state="bye",
            ),
            http=browser,
        )
        assert after == "http://127.0.0.1:39124/?state=bye"
        assert asks_for_login(browser)


def test_web_client_signs_in_silently_with_a_live_session(oidc_provider: OidcProvider) -> None:
    redirect_uri = "http://127.0.0.1:40002/auth/web/callback"
    client = oidc_provider.register_client([redirect_uri], application_type="web")
    with httpx.Client(timeout=10.0) as browser:
        first = oidc_provider.authorization_request(client_id=client[0], redirect_uri=redirect_uri)
        oidc_provider.login(first.url, http=browser)
        silent = oidc_provider.authorization_request(
            client_id=client[0], redirect_uri=redirect_uri, prompt="none"
        )
        assert "code" in _query(oidc_provider.login(silent.url, http=browser))
    other_port = oidc_provider.authorization_request(
        client_id=client[0], redirect_uri="http://127.0.0.1:40003/auth/web/callback"
    )
    with pytest.raises(OidcProviderError, match="redirect_uri"):
        oidc_provider.login(other_port.url)
