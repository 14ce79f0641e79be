"""Token endpoint: code redemption and client authentication."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest
from _idp_helpers import CALLBACK, authorize, code_flow, pkce_pair, query_of
from joserfc import jwt
from joserfc.jwk import RSAKey

from authrelay.testing import FakeClock, IdentityProvider, OAuthClient

BASIC = ("test-client", "test-secret")


def _code(client: httpx.Client, challenge: str | None = None) -> str:
    return query_of(authorize(client, challenge=challenge))["code"]


def _redeem(client: httpx.Client, code: str, verifier: str | None, **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    return client.post("/token", data=data, auth=BASIC)


def test_code_flow_over_http_issues_typed_tokens(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    body = code_flow(http_client, scope="openid profile orders.read")
    jwks = http_client.get("/jwks").json()
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(jwks)
    access = jwt.decode(str(body["access_token"]), keys)
    assert access.header["typ"] == "at+jwt"
    assert access.claims["aud"] == "api://orders"
    assert access.claims["client_id"] == "test-client"
    assert set(access.claims) >= {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"}
    id_token = jwt.decode(str(body["id_token"]), keys)
    assert id_token.claims["aud"] == "test-client"
    assert id_token.claims["azp"] == "test-client"
    assert id_token.claims["nonce"] == "n-1"
    assert id_token.claims["iss"] == identity_provider_server.issuer
    assert {"at_hash", "auth_time"} <= set(id_token.claims)
    assert body["token_type"] == "Bearer"


def test_second_redemption_fails_and_revokes_first_tokens(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    verifier, challenge = pkce_pair()
    code = _code(idp_client, challenge)
    first = _redeem(idp_client, code, verifier)
    assert first.status_code == 200
    second = _redeem(idp_client, code, verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert second.headers["cache-control"] == "no-store"
    tokens = first.json()
    assert identity_provider.refresh_token_state(tokens["refresh_token"]) == "revoked"
    assert identity_provider.is_revoked(tokens["access_token"])
    introspected = idp_client.post(
        "/introspect", data={"token": tokens["access_token"]}, auth=BASIC
    )
    assert introspected.json() == {"active": False}


def test_code_expires(
    make_identity_provider: Callable[..., IdentityProvider], clock: FakeClock
) -> None:
    idp = make_identity_provider(clock=clock, code_ttl=60)
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as client:
        verifier, challenge = pkce_pair()
        code = _code(client, challenge)
        clock.advance(61)
        response = _redeem(client, code, verifier)
    assert response.json()["error"] == "invalid_grant"


def test_redirect_uri_must_match(idp_client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    code = _code(idp_client, challenge)
    response = _redeem(idp_client, code, verifier, redirect_uri="http://testserver/other")
    assert response.json()["error"] == "invalid_grant"


def test_wrong_verifier_rejected(idp_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    other_verifier, _ = pkce_pair()
    response = _redeem(idp_client, _code(idp_client, challenge), other_verifier)
    assert response.json()["error"] == "invalid_grant"


def test_missing_verifier_rejected(idp_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    response = _redeem(idp_client, _code(idp_client, challenge), None)
    assert response.json()["error"] == "invalid_grant"


def test_verifier_without_challenge_is_a_downgrade(idp_client: httpx.Client) -> None:
    verifier, _ = pkce_pair()
    response = _redeem(idp_client, _code(idp_client), verifier)
    assert response.json()["error"] == "invalid_grant"


def test_code_of_another_client_rejected(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    from authrelay.testing.pytest_plugin import default_provider_config

    clients = [
        *default_provider_config()["clients"],
        OAuthClient("other", "other-secret", redirect_uris=(CALLBACK,)),
    ]
    idp = make_identity_provider(clients=clients)
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as client:
        verifier, challenge = pkce_pair()
        code = _code(client, challenge)
        response = client.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
            },
            auth=("other", "other-secret"),
        )
    assert response.json()["error"] == "invalid_grant"


def test_ac09_basic_credentials_are_form_urlencoded(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    secret = "a:b%c+d"
    idp = make_identity_provider(
        clients=[OAuthClient("id with:colon", secret, grant_types=("client_credentials",))]
    )
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as client:

        def send(raw: str) -> httpx.Response:
            header = "Basic " + base64.b64encode(raw.encode()).decode()
            return client.post(
                "/token",
                data={"grant_type": "client_credentials", "resource": "api://orders"},
                headers={"Authorization": header},
            )

        encoded = f"{quote('id with:colon', safe='')}:{quote(secret, safe='')}"
        assert send(encoded).status_code == 200
        raw = send(f"id with:colon:{secret}")
        assert raw.status_code == 401
        assert raw.json()["error"] == "invalid_client"
        assert raw.headers["www-authenticate"].startswith("Basic")


def test_client_secret_post_refused_for_basic_client(idp_client: httpx.Client) -> None:
    response = idp_client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "test-client",
            "client_secret": "test-secret",
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_two_auth_methods_is_invalid_request(idp_client: httpx.Client) -> None:
    response = idp_client.post(
        "/token",
        data={"grant_type": "client_credentials", "client_secret": "test-secret"},
        auth=BASIC,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_wrong_secret_is_401_with_challenge(idp_client: httpx.Client) -> None:
    response = idp_client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("test-client", "nope")
    )
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert "nope" not in response.text


def test_repeated_parameter_and_json_body_refused(idp_client: httpx.Client) -> None:
    repeated = idp_client.post(
        "/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=BASIC,
    )
    assert repeated.json()["error"] == "invalid_request"
    as_json = idp_client.post("/token", json={"grant_type": "client_credentials"}, auth=BASIC)
    assert as_json.json()["error"] == "invalid_request"


def test_unsupported_and_unauthorized_grant(idp_client: httpx.Client) -> None:
    password = idp_client.post(
        "/token", data={"grant_type": "password", "username": "alice"}, auth=BASIC
    )
    assert password.json()["error"] == "unsupported_grant_type"
    public = idp_client.post(
        "/token", data={"grant_type": "client_credentials", "client_id": "public-client"}
    )
    assert public.json()["error"] == "unauthorized_client"


# private_key_jwt (RFC 7523) ------------------------------------------------------------


@pytest.fixture
def pkj() -> Iterator[tuple[IdentityProvider, RSAKey, httpx.Client]]:
    key = RSAKey.generate_key(2048, {"kid": "client-key", "alg": "RS256"})
    client = OAuthClient(
        "jwt-client",
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [key.as_dict(private=False)]},
        grant_types=("client_credentials",),
    )
    idp = IdentityProvider(issuer="https://idp.test", clients=[client])
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as http:
        yield idp, key, http


def _assertion(key: RSAKey, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "jwt-client",
        "sub": "jwt-client",
        "aud": "https://idp.test",
        "exp": now + 60,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "client-key"}, claims, key)


def _cc(http: httpx.Client, assertion: str) -> httpx.Response:
    return http.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )


def test_ac11_private_key_jwt_accepted_and_jti_single_use(
    pkj: tuple[IdentityProvider, RSAKey, httpx.Client],
) -> None:
    _, key, http = pkj
    assertion = _assertion(key)
    assert _cc(http, assertion).status_code == 200
    replay = _cc(http, assertion)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"


def test_private_key_jwt_token_endpoint_audience_accepted(
    pkj: tuple[IdentityProvider, RSAKey, httpx.Client],
) -> None:
    _, key, http = pkj
    assert _cc(http, _assertion(key, aud="https://idp.test/token")).status_code == 200


def test_private_key_jwt_bad_claims_rejected(
    pkj: tuple[IdentityProvider, RSAKey, httpx.Client],
) -> None:
    _, key, http = pkj
    for overrides in (
        {"exp": None},
        {"exp": 1},
        {"jti": None},
        {"aud": "https://elsewhere.test"},
        {"iss": "someone-else"},
    ):
        response = _cc(http, _assertion(key, **overrides))
        assert response.status_code == 401, overrides
        assert response.json()["error"] == "invalid_client"


def test_private_key_jwt_wrong_key_rejected(
    pkj: tuple[IdentityProvider, RSAKey, httpx.Client],
) -> None:
    _, _, http = pkj
    other = RSAKey.generate_key(2048, {"kid": "client-key"})
    assert _cc(http, _assertion(other)).status_code == 401
